"""What both PostgreSQL faces share, importing neither driver: SQL text, pool and retry policy."""

from __future__ import annotations

import gc
import random
import select
from collections.abc import Callable, Sequence
from typing import Any

from .._config import Config
from .errors import never_sent

__all__ = [
    "RESET_QUERY",
    "backoff",
    "begin_sql",
    "build_records",
    "is_permanent",
    "may_move_on",
    "pool_options",
    "unread_input",
]

# Run before a connection whose session state changed rejoins the pool.
RESET_QUERY = "CLOSE ALL; UNLISTEN *; RESET ALL; SELECT pg_advisory_unlock_all(); DISCARD TEMP"

_PERMANENT = ("28", "3D")  # bad credentials, no such database: retrying will not help


_GC_PAUSE_ROWS = 1000


def build_records(
    cls: type[Any], rows: Sequence[Any], values: Callable[[Any], Any] | None = None
) -> list[Any]:
    """``[cls(row) for row in rows]`` in one C-level pass, with the cyclic GC paused.

    Building 200k records allocates 200k containers: left on, the collector runs full passes
    over every live object several times during the loop (most of fetch_all's overhead over
    the bare driver). Records hold no cycles, so nothing is lost by pausing it. ``values``,
    when given, turns a driver row into the tuple of its values first (``tuple.__new__`` of a
    subclass copies from a tuple without building an iterator: asyncpg's ``row[:]`` is one C
    call that returns that tuple).
    """
    source = rows if values is None else map(values, rows)
    if len(rows) < _GC_PAUSE_ROWS or not gc.isenabled():
        return list(map(cls, source))
    gc.disable()
    try:
        return list(map(cls, source))
    finally:
        gc.enable()


def unread_input(fd: int) -> bool:
    """Whether an idle connection's socket holds bytes nobody has read (or is closed).

    The server sends nothing to an idle session except when it ends it (a FATAL such as
    ``terminating connection due to administrator command``, then EOF). Checked on checkout,
    before anything is sent: a statement that would go to a session the server has already
    ended is never sent there, so it may move to another connection without being sent twice.
    """
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def begin_sql(isolation: str | None, readonly: bool) -> str:
    """``BEGIN [ISOLATION LEVEL ...] [READ ONLY]``."""
    sql = "BEGIN"
    if isolation is not None:
        sql += " ISOLATION LEVEL " + isolation.replace("_", " ").upper()
    if readonly:
        sql += " READ ONLY"
    return sql


def is_permanent(exc: BaseException) -> bool:
    """A connection failure that retrying cannot fix."""
    return str(getattr(exc, "sqlstate", "") or "").startswith(_PERMANENT)


def backoff(delay: float) -> tuple[float, float]:
    """(how long to sleep now, the next delay): jittered, doubling, capped at 2 s."""
    return delay * random.uniform(0.5, 1.0), min(delay * 2, 2.0)


def pool_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``Pool``/``SyncPool`` from the connection options."""
    min_size = int(config.get("min_size", 1))
    return {
        "max_size": max(int(config.get("max_size", 10)), min_size),
        "acquire_timeout": config.acquire_timeout,
        "max_waiting": config.max_waiting,
        "max_idle": config.get("max_idle", None),
        "max_lifetime": config.get("max_lifetime", None),
    }


def may_move_on(exc: BaseException, attempt: int, max_size: int) -> bool:
    """Whether a statement whose connection died may be sent again on another connection.

    Only when the driver never sent it: a statement that reached the server may have written,
    whatever its first keyword says (``WITH ... INSERT ... RETURNING``, ``SELECT f()`` where
    ``f`` writes), so its outcome is unknown and the caller gets ``ConnectionLost``. After a
    server restart several pooled connections can be dead before anyone notices, so up to one
    attempt per pooled connection.
    """
    return attempt < max_size and never_sent(exc)
