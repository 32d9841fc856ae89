"""The service shells: Celery app and worker task, proposer service, metrics, the API's wiring."""
