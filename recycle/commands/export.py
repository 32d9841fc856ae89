"""`recycle export`: one trial of a search (Redis or a run directory) as an HF directory + mergekit.yaml."""

from __future__ import annotations

from pathlib import Path

from recycle.commands import common
from recycle.commands.searches import Searches, find_search_spec, open_searches
from recycle.errors import UsageError
from recycle.settings import Settings


def command_export(args) -> int:
    from contracts import TrialStatus
    from merger import export_trial

    searches, one = open_searches(args.search)
    search_id = one or search_of_trial(searches, args.search, args.trial)
    spec = find_search_spec(searches, search_id)
    trial_id = resolve_trial(searches, search_id, spec, args.trial)
    result = searches.store.get_result(search_id, trial_id)
    if result is None:
        raise UsageError(f"search {search_id!r} has no result for trial {args.trial!r} (give a trial id, a number or 'best')")
    if result.status is not TrialStatus.ok:
        raise UsageError(f"trial {trial_id} failed ({result.error}); only successful trials can be exported")
    out = export_trial(search_id, spec, result, Path(args.out), allowed_roots=Settings().allowed_roots or None,
                       dtype=common.torch_dtype(args.dtype))
    by_checkpoint = spec.merge.weights.by_checkpoint(spec.pool.names, result.proposal.weights)
    weights = " ".join(f"{n}={'/'.join(f'{w:.3f}' for w in values)}" for n, values in by_checkpoint.items()
                       if max(abs(w) for w in values) > 0.0005)  # per layer group: one value per group, first to last
    common.console.print(f"exported trial {trial_id} ({result.proposal.source}) to {out}: HF directory, mergekit.yaml, recycle.json")
    common.console.print(f"weights: {weights}")
    return 0


def search_of_trial(searches: Searches, target: str, trial: str) -> str:
    """In a run directory of several searches only a full trial id says which search it is from."""
    for search_id in searches.ids:
        if trial.startswith(f"{search_id}-t"):
            return search_id
    raise UsageError(f"{target} holds {len(searches.ids)} searches ({', '.join(searches.ids)}): give one search's"
                     f" folder (e.g. {target.rstrip('/')}/<strategy>) or a full trial id")


def resolve_trial(searches: Searches, search_id: str, spec, trial: str) -> str:
    """A trial id from what the user typed: an id, a trial number, or 'best'."""
    from api.views import search_view
    from contracts import Proposal

    if trial == "best":
        best = search_view(searches.store, search_id, spec)["best"]
        if best is None:
            raise UsageError(f"search {search_id!r} has no successful trial yet")
        return best["trial_id"]
    if trial.isdigit():
        return Proposal.make_trial_id(search_id, int(trial))
    return trial
