"""The Celery app: JSON only, at-least-once delivery, one trial per worker process at a time."""

from __future__ import annotations

from celery import Celery

from contracts import keys

# How a trial whose worker died comes back (tests/faults/test_worker_kills.py does both):
# - The process running the trial dies (SIGKILL, the OOM killer's choice: the big pool
#   child): the worker's main process sees it, and `task_reject_on_worker_lost` puts the
#   message back at once; measured here, the trial started again ~0.5 s after the kill.
# - The whole worker dies (SIGKILL of the process group, a lost host): nobody is left to
#   reject the message, and a restarted worker does not claim it either (it can only
#   restore what it delivered itself, and its memory of that died with it). The Redis
#   transport keeps it "unacked" and any live worker hands it out again once it is older
#   than the visibility timeout (measured: ~6-7 s with a 6 s timeout). So the timeout must exceed
#   the longest trial (or trials still running are handed out twice: harmless, results
#   are recorded once, but wasted), and a lost trial comes back only after it: a search
#   whose `trial_timeout_s` is shorter marks the trial failed first. Settings:
#   RECYCLE_BROKER_VISIBILITY_TIMEOUT_S.
VISIBILITY_TIMEOUT_S = 2 * 3600


def make_celery(broker_url: str, visibility_timeout_s: float = VISIBILITY_TIMEOUT_S) -> Celery:
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
