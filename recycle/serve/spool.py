"""Finished results that could not be published, kept on disk until Redis is back.

A worker process whose publish fails (Redis down, restarting, out of reach) writes the
result here, one JSON file each, and goes on; the worker's main process publishes the
files oldest first whenever Redis answers, also after a restart of the worker (the
folder is in the data dir). Bounded: past `max_results` files a new result is dropped
and counted (recycle_worker_spool_dropped_total) rather than filling the disk.
Publishing twice is harmless (the proposer records each trial id once); a lock keeps
two flushers sharing the folder from doing it needlessly.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from contracts import TrialResult

log = logging.getLogger("recycle.serve.spool")


class Spool:
    def __init__(self, folder: Path, max_results: int):
        self.folder, self.max_results = Path(folder), max_results
        self.folder.mkdir(parents=True, exist_ok=True)

    def files(self) -> list[Path]:
        """Spooled results, oldest first (names start with the time they were spooled)."""
        return sorted(self.folder.glob("*.json"))

    def count(self) -> int:
        return len(self.files())

    def put(self, result: TrialResult) -> bool:
        """Keep `result` until it can be published; False (nothing written) when full."""
        if self.count() >= self.max_results:
            return False
        name = f"{time.time_ns():020d}-{os.getpid()}-{result.trial_id}"
        partial = self.folder / f".{name}.tmp"
        partial.write_text(result.model_dump_json())
        os.replace(partial, self.folder / f"{name}.json")  # a reader never sees half a file
        return True

    def flush(self, publish: Callable[[TrialResult], None]) -> int:
        """Publish and remove spooled results, oldest first; how many went out. What
        `publish` raises (Redis still away) stops the pass, the rest stays for the next."""
        with (self.folder / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is flushing this folder
            sent = 0
            for path in self.files():
                try:
                    result = TrialResult.model_validate_json(path.read_bytes())
                except (OSError, ValidationError) as error:
                    log.error("spooled file %s is not a trial result, set aside: %s", path.name, str(error)[:300])
                    path.rename(path.with_suffix(".bad"))
                    continue
                publish(result)
                path.unlink()
                sent += 1
                log.info("spooled result of trial %s published", result.trial_id)
            return sent
