"""The Celery app: JSON only, at-least-once delivery, one trial per worker process at a time."""

from __future__ import annotations

from celery import Celery

from contracts import keys

# Upper bound on how long the Redis broker waits before handing an unacknowledged
# trial to another worker when its worker vanished without a word (SIGKILL of the
# whole worker). Trials that outlive it would be delivered twice; results are
# idempotent, and the proposer times trials out well before this.
VISIBILITY_TIMEOUT_S = 2 * 3600


def make_celery(broker_url: str) -> Celery:
    app = Celery("recycle", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message must not be able to run code
        result_serializer="json",
        task_ignore_result=True,  # results travel through the recycle results stream
        task_acks_late=True,  # ack after the trial: a crashed worker's trial is redelivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not hoard trials others could run
        task_default_queue=keys.TRIALS_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        worker_hijack_root_logger=False,
    )
    return app
