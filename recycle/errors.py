"""The error every part of the `recycle` command raises for a request it cannot do."""


class UsageError(Exception):
    """A problem with what the user asked for: printed without a traceback, exit 2."""
