"""The backend seam: the small protocol every backend implements, and nothing above it knows more.

A backend runs autocommit statements (``run``) and lends out sessions: a connection pinned for a
transaction, a ``db.connection()`` block or a streaming cursor. Pool, transactions, records,
stats and errors above this line are written once for all backends.

Contract every backend keeps:

- ``run`` and ``Session.run`` take an analysed statement (``SqlInfo``) whose parameters were
  already checked, translate driver errors into the ``awaitdb`` tree, and honour ``timeout`` by
  cancelling the statement on the database and raising ``QueryTimeout``.
- ``Session.run`` may be called by several tasks at once; the session serializes them.
- ``release`` never waits and cannot be cancelled: it hands the connection back to be reset
  (rolled back if a transaction is still open) or discarded.

Written once above the seam, not in each backend: refusing work once the database is closed,
refusing transaction control outside a block, and waiting (up to the close timeout) until the
backend is no longer ``busy`` before ``close`` (``Database``). Transaction SQL comes from the
database's dialect (``awaitdb/_dialects.py``). A result's type follows the operation
(``_ops.Op``): a row count, a ``Record`` or ``None``, a list of records, or one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .._ops import Column, Op, Params
from .._record import Record
from .._sql import SqlInfo
from .._stats import Stats

__all__ = ["NOT_NOW", "Backend", "Session"]


class _NotNow:
    """Returned by ``Backend.run_now`` when the statement must go through ``run``."""

    def __repr__(self) -> str:
        return "NOT_NOW"


NOT_NOW: Any = _NotNow()


class Session(Protocol):
    """One connection lent to a transaction, a pinned block or a cursor."""

    readonly: bool

    @property
    def in_transaction(self) -> bool:
        """Whether the database reports an open transaction on this connection."""
        ...

    async def run(
        self,
        kind: Op,
        info: SqlInfo,
        params: Params,
        arg: Column,
        timeout: float | None,
    ) -> Any:
        """Run one statement on this connection and shape its result by ``kind``."""
        ...

    async def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> object:
        """Start a streaming query; returns an opaque handle for ``fetch_cursor``.

        ``timeout`` bounds this step as for ``run`` (cancelled on the database, ``QueryTimeout``).
        """
        ...

    async def fetch_cursor(
        self, cursor: object, size: int, timeout: float | None = None
    ) -> list[Record]:
        """Up to ``size`` more rows; fewer means the cursor is exhausted (``timeout`` as above)."""
        ...

    async def close_cursor(self, cursor: object) -> None:
        """Release the cursor's resources (and end a transaction opened for it)."""
        ...


class Backend(Protocol):
    """A database reached through one driver: autocommit statements plus lent sessions."""

    name: str
    stats: Stats

    def run_now(
        self,
        kind: Op,
        info: SqlInfo,
        params: Params,
        arg: Column,
        timeout: float | None,
    ) -> Any:
        """Run an autocommit statement without waiting if that is cheap, else return ``NOT_NOW``.

        The async SQLite backend answers tiny reads here, on the loop thread; sync backends
        answer everything here; network backends always return ``NOT_NOW``.
        """
        ...

    async def run(
        self,
        kind: Op,
        info: SqlInfo,
        params: Params,
        arg: Column,
        timeout: float | None,
    ) -> Any:
        """Run one statement in autocommit: one hand-off or one round trip."""
        ...

    def writes(self, info: SqlInfo, refusal: BaseException | None = None) -> bool:
        """Whether ``info`` writes: its text's kind, or what this backend learned about it.

        ``refusal``: the error a read-only connection raised for it; if that was a refused write
        the backend learns it (the writer runs it from now on) and this returns True.
        """
        ...

    async def acquire(self, *, write: bool, timeout: float | None) -> Session:
        """Lend a session; ``write=False`` may use a read-only connection."""
        ...

    def release(self, session: Session, *, discard: bool = False) -> None:
        """Take a session back (reset or discarded). Never waits."""
        ...

    def pool_stats(self) -> dict[str, int]:
        """Gauges for ``stats()``: size, max_size, idle, in_use, waiting."""
        ...

    def busy(self) -> bool:
        """Whether work is still running: a session lent, a statement in flight."""
        ...

    async def close(self) -> None:
        """Close everything now (the database waited for ``busy`` to clear, or ran out of time):
        interrupt what still runs, close every connection."""
        ...
