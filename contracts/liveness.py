"""Worker liveness, as every service sees it: the lease a worker holds on a trial, the
heartbeat record each worker process keeps in the store, and their one default.

A worker process renews the lease of the trial it runs every few seconds; a lease not
renewed for `LEASE_TTL_S` lapses and the proposer sends the same trial again. The same
span without a heartbeat marks a worker as no longer alive.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# Seconds a lease (and a heartbeat) stays valid without renewal. Five missed renewals
# (RENEW_FRACTION) before a trial is given up on; a whole worker lost mid-trial costs
# about this long. Not tuned: the target is a trial running again within 60 s.
LEASE_TTL_S = 30.0
# Workers renew every LEASE_TTL_S * RENEW_FRACTION seconds.
RENEW_FRACTION = 1 / 6
# A lease whose trial finished stays for one TTL with this prefix: a late duplicate
# message of the trial is skipped instead of run again.
DONE_PREFIX = "done:"


class TrialRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    search_id: str
    trial_id: str


class WorkerInfo(BaseModel):
    """One worker process (it runs one trial at a time), as its last heartbeat left it."""

    model_config = ConfigDict(frozen=True)

    id: str  # "<host>:<pid>", as TrialResult.worker names it
    host: str
    device: str
    pools: tuple[str, ...] = ()  # pool names resident in the process
    current_trial: TrialRef | None = None
    last_heartbeat: float = Field(description="unix time of the last heartbeat")
    trials_done: int = 0

    def alive(self, now: float, stale_after_s: float) -> bool:
        return now - self.last_heartbeat <= stale_after_s

    def view(self, now: float, stale_after_s: float) -> dict:
        """The JSON a reader gets (GET /v1/workers)."""
        return {**self.model_dump(mode="json"), "pools": list(self.pools), "alive": self.alive(now, stale_after_s)}
