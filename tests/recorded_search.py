"""A search on the demo pool whose trials are written through the store API, as the
proposer would record them: the baselines, a few strategy trials and one failure."""

from __future__ import annotations

import time

from contracts import Proposal, SearchSpec, SearchStatus, TrialResult, TrialStatus


def record_search(store, demo_pool, search_id: str, status: SearchStatus = SearchStatus.completed) -> SearchSpec:
    spec = SearchSpec(pool=demo_pool.pool, tasks=demo_pool.tasks, strategy="tpe", budget=10, concurrency=2, seed=0)
    store.create_search(search_id, spec)
    names, tasks = spec.pool.names, [t.name for t in spec.tasks]
    n = len(names)
    weights = [tuple(1.0 if j == i else 0.0 for j in range(n)) for i in range(n)]  # singles
    weights += [tuple(1.0 / n for _ in range(n)), (0.1, 0.4, 0.3, 0.1, 0.1)[:n], (0.2, 0.1, 0.5, 0.1, 0.1)[:n]]
    sources = [f"single:{name}" for name in names] + ["uniform", "tpe", "tpe"]
    started = time.time() - 60
    for number, (w, source) in enumerate(zip(weights, sources)):
        proposal = Proposal(search_id=search_id, trial_id=Proposal.make_trial_id(search_id, number), number=number,
                            weights=w, source=source)
        store.add_proposal(proposal)
        # Each checkpoint is best on "its" task; mixing trades them off.
        scores = {task: 3.0 + sum(wk * (0.4 if names[k] == task else 1.0) for k, wk in enumerate(w)) + 0.01 * number
                  for task in tasks}
        store.record_result(TrialResult(proposal=proposal, status=TrialStatus.ok, scores=scores,
                                        report={t: v + 0.05 for t, v in scores.items()}, worker="w1",
                                        total_seconds=0.5, finished_at=started + number))
    failed = Proposal(search_id=search_id, trial_id=Proposal.make_trial_id(search_id, len(weights)), number=len(weights),
                      weights=weights[-1], source="tpe")
    store.add_proposal(failed)
    store.record_result(TrialResult(proposal=failed, status=TrialStatus.failed, error="worker lost", finished_at=started + 20))
    store.set_status(search_id, status)
    return spec
