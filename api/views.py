"""What a search looks like to a reader: one dict, shared by the JSON API, the status
page (through the API) and `recycle status`."""

from __future__ import annotations

from proposer import summarize_search

# Throughput is measured over the most recent results, so it follows the current pace.
RATE_WINDOW = 20


def trials_per_second(results) -> float | None:
    """Results per second over the last RATE_WINDOW results (by finish time); None until two."""
    times = sorted(r.finished_at for r in results if r.finished_at > 0)[-RATE_WINDOW:]
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def search_view(store, search_id: str, spec) -> dict:
    proposals, results = store.proposals(search_id), store.results(search_id)
    return {
        "id": search_id,
        "status": store.get_status(search_id).value,
        "pool": spec.pool.name,
        "checkpoints": spec.pool.names,
        "strategy": spec.strategy,
        "budget": spec.budget,
        "concurrency": spec.concurrency,
        "objectives": [o.model_dump(mode="json") for o in spec.objectives],
        "trials_per_s": trials_per_second(results),
        **summarize_search(spec, proposals, results),
    }
