"""Redis key names and Celery task names, in one place so every service agrees."""

PREFIX = "recycle"

# Celery task that merges one proposal and evaluates it (evaluator.worker_task).
MERGE_AND_EVALUATE_TASK = "recycle.merge_and_evaluate"
# Queue the proposer sends trials to and workers consume.
TRIALS_QUEUE = "recycle.trials"


def pool(pool_id: str) -> str:
    return f"{PREFIX}:pool:{pool_id}"


def pools_index() -> str:
    return f"{PREFIX}:pools"


def search(search_id: str) -> str:
    return f"{PREFIX}:search:{search_id}"


def searches_index() -> str:
    return f"{PREFIX}:searches"


def proposals(search_id: str) -> str:
    return f"{PREFIX}:search:{search_id}:proposals"


def results(search_id: str) -> str:
    return f"{PREFIX}:search:{search_id}:results"


def results_stream() -> str:
    """Stream of trial ids whose results were recorded; the proposer tails it."""
    return f"{PREFIX}:results"


def sent(search_id: str) -> str:
    return f"{PREFIX}:search:{search_id}:sent"


def result_order(search_id: str) -> str:
    return f"{PREFIX}:search:{search_id}:order"


# -- liveness (contracts.liveness) ---------------------------------------------------


def lease(search_id: str, trial_id: str) -> str:
    """String with a TTL: the worker id holding the trial (renewed while it runs)."""
    return f"{PREFIX}:search:{search_id}:lease:{trial_id}"


def claims(search_id: str) -> str:
    """Hash trial id -> worker id that last took the trial's lease (a lease gone from
    under a claim is a lapsed one: its worker died or handed the trial back)."""
    return f"{PREFIX}:search:{search_id}:claims"


def reproposals(search_id: str) -> str:
    """Hash trial id -> how many times its lease lapsed (the proposer's count)."""
    return f"{PREFIX}:search:{search_id}:reproposals"


def workers() -> str:
    """Hash worker id -> WorkerInfo JSON (each worker process's last heartbeat)."""
    return f"{PREFIX}:workers"
