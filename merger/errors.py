"""Errors the merger raises for bad input.

All are ValueErrors, so a caller that turns bad input into a 400 or a failed trial
can catch one base class; the subclasses say which input was bad.
"""


class MergerError(ValueError):
    """Base class of every user-facing merger error."""


class PoolError(MergerError):
    """A checkpoint pool cannot be opened: missing or unsafe files, incompatible tensors."""


class WeightsError(MergerError):
    """Merge weights that do not fit the pool or the merge spec."""


class MethodError(MergerError):
    """An unknown merge method, or a merge spec the method cannot run."""


class ExportError(MergerError):
    """An export target that cannot be written (for instance, not empty)."""


class ExportExistsError(ExportError, FileExistsError):
    """The export target exists and is not empty (also a FileExistsError, for callers that catch that)."""
