"""The Celery app: JSON only, at-least-once delivery, one trial per worker process at a time."""

from __future__ import annotations

from celery import Celery

from contracts import keys
from recycle.settings import Settings

# How a trial whose worker died comes back (tests/faults/test_worker_kills.py does both):
# - The process running the trial dies (SIGKILL, the OOM killer's choice: the big pool
#   child): the worker's main process sees it, and `task_reject_on_worker_lost` puts the
#   message back at once; the next process takes over the dead one's lease
#   (recycle/serve/heartbeat.py). Measured here: running again ~0.5 s after the kill.
# - The whole worker dies (SIGKILL of the process group, a lost host): nobody is left to
#   reject the message. Its trial's lease is no longer renewed, and once it lapses
#   (RECYCLE_LEASE_TTL_S, 30 s) the proposer sends the trial again under the same id.
# The broker's visibility timeout (a message unacknowledged this long is handed out
# again) is a backstop only: Celery's own guidance is that it is no liveness mechanism.
# A message it brings back late finds its trial recorded, or its lease held, and is
# skipped. Settings: RECYCLE_BROKER_VISIBILITY_TIMEOUT_S (default in recycle/settings.py).
VISIBILITY_TIMEOUT_S = Settings.model_fields["broker_visibility_timeout_s"].default


def make_celery(broker_url: str, visibility_timeout_s: float = VISIBILITY_TIMEOUT_S) -> Celery:
    app = Celery("recycle", broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message must not be able to run code
        result_serializer="json",
        task_ignore_result=True,  # results travel through the recycle results stream
        task_acks_late=True,  # ack after the trial: a crashed worker's trial is redelivered
        task_reject_on_worker_lost=True,
        # Redis away: running trials go on (their results are spooled), never cancelled.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_prefetch_multiplier=1,  # a busy worker does not hoard trials others could run
        task_default_queue=keys.TRIALS_QUEUE,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            # Live workers sweep for messages past the timeout every `unacked_restore_interval`
            # seconds (kombu's default sweeps only every 10 x 10 s): a quarter of the timeout,
            # between 1 and 10 s, so a short timeout is honoured promptly and a long one costs
            # one cheap Redis query per worker every 10 s.
            "unacked_restore_interval": max(1, min(10, int(visibility_timeout_s / 4))),
            "unacked_restore_throttle": 1,
        },
        worker_hijack_root_logger=False,
    )
    return app
