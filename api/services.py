"""What the API needs from the rest of recycle, injected by the composition root.

The API package may import only contracts and the proposer's store, so the
work that needs the merger or the evaluator (opening a pool to validate it,
checking task files, exporting a merge) arrives as plain callables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from contracts import PoolSpec, SearchSpec, TrialResult


class InputError(ValueError):
    """Raised by a service when what the user sent cannot be used; becomes a 4xx."""


@dataclass(frozen=True)
class Services:
    # Opens and validates a pool (paths under the allowed roots, tensors match); returns
    # facts worth showing (tensor count, bytes, dtypes). Raises InputError.
    inspect_pool: Callable[[PoolSpec], dict]
    # Checks a search can run: pool opens, task files readable and splittable. Raises InputError.
    check_search: Callable[[SearchSpec], None]
    # Writes an HF directory + mergekit YAML + recycle.json for one trial; returns the directory.
    export_trial: Callable[[str, SearchSpec, TrialResult], Path]
