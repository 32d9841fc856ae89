"""Where `recycle status` and `recycle export` find searches: a local run directory or Redis."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from recycle.errors import UsageError
from recycle.settings import Settings


@dataclass
class Searches:
    store: object  # a proposer SearchStore: Redis, or a run directory read into memory
    where: str  # for messages
    ids: list[str]  # newest first
    local: bool


def names_a_path(target: str) -> bool:
    """A run directory rather than a search id: a folder here, or anything with a slash (search ids have none)."""
    return "/" in target or target in (".", "..") or Path(target).is_dir()


def open_searches(target: str | None) -> tuple[Searches, str | None]:
    """The searches `target` (a run directory, a search id, or None: every search in Redis) is about,
    and the one search it names (None when it names several)."""
    if target is not None and names_a_path(target):
        from recycle.local.rundir import read_run_dir, run_dir_store

        found = read_run_dir(Path(target))
        ids = [s.search_id for s in found]
        return Searches(run_dir_store(found), f"run directory {target}", ids, local=True), ids[0] if len(ids) == 1 else None
    settings = Settings()
    store = open_store(settings)
    return Searches(store, safe_url(settings.redis_url), list(reversed(store.list_searches())), local=False), target


def open_store(settings):
    """The Redis store the services share (RECYCLE_REDIS_URL), or a clear error."""
    import redis

    from proposer.redis_store import RedisStore

    store = RedisStore.from_url(settings.redis_url)
    try:
        store.ping()
    except redis.RedisError as error:
        raise UsageError(f"cannot reach Redis at {safe_url(settings.redis_url)} ({error}); set RECYCLE_REDIS_URL"
                         " (or give a run directory)") from None
    return store


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def find_search_spec(searches: Searches, search_id: str):
    spec = searches.store.get_search(search_id)
    if spec is None:
        hint = f"; known: {', '.join(searches.ids[:5])}" if searches.ids else "; the store has no searches"
        where = "" if searches.local else f" in {searches.where}"
        raise UsageError(f"no search {search_id!r}{where}{hint}")
    return spec
