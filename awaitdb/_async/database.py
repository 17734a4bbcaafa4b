"""``Database``: the object ``connect()`` returns; queries, transactions, stats and close.

Outside a block every call runs in autocommit on a pooled connection (one hand-off or one round
trip). Inside ``transaction()`` or ``connection()`` the call goes to the block's connection,
found through a context variable, so helpers that only know ``db`` join the caller's
transaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from time import perf_counter
from typing import Any, TypeVar

from .._compat import ASYNC, asleep
from .._config import Config, check_timeout
from .._dialects import dialect_for
from .._errors import InterfaceError, PoolOverloaded, PoolTimeout, TransientError
from .._ops import EXECUTE_MANY, Column, Op
from .._sql import BIG_SQL, TXCONTROL, SqlInfo, _cache, analyze, bind_lists, check_params
from .._stats import Stats, StatsSnapshot, acquire_waited
from .backend import NOT_NOW, Backend
from .queries import Queries
from .rows import Rows
from .transaction import PinnedConnection, Scope, Transaction, innermost_transaction

if ASYNC:  # the sync face has no loop to bridge to
    import asyncio

    from .._bridge import SyncView

__all__ = ["Database", "open_database"]

T = TypeVar("T")

MANY_CHECKED_ON_LOOP = 1000  # execute_many checks more rows than this in a thread (async face)
CLOSE_POLL_S = 0.002  # close() looks this often whether the backend's work has finished

if ASYNC:
    _TXCONTROL_MESSAGE = (
        "transaction control statements (BEGIN, COMMIT, SAVEPOINT...) need a pinned connection: "
        "use `async with db.transaction()` or `async with db.connection()`"
    )
else:
    _TXCONTROL_MESSAGE = (
        "transaction control statements (BEGIN, COMMIT, SAVEPOINT...) need a pinned connection: "
        "use `with db.transaction()` or `with db.connection()`"
    )


def _check_many(info: SqlInfo, rows: list[Any]) -> None:
    for one in rows:
        check_params(info, one)


class Database(Queries):
    """A pool of connections to one database, with the query methods of ``Queries``."""

    def __init__(self, backend: Backend, config: Config) -> None:
        self._backend = backend
        self._config = config
        self._dialect = dialect_for(config.scheme)  # transaction SQL, list binding...
        self._stats = backend.stats
        self._statement_timeout = config.statement_timeout
        self._scope: ContextVar[Scope | None] = ContextVar(f"awaitdb-{id(self)}", default=None)
        self._closed = False
        # Features holding resources of their own (the wake-up layer's listener) release them
        # here, before the pool closes.
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []
        self._migrations_applied: tuple[str, ...] = ()
        if ASYNC:
            self._loop = asyncio.get_running_loop()  # its connections belong to this loop

    @property
    def url(self) -> str:
        """The database URL with any password hidden."""
        return self._config.redacted_url

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._backend.name

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def migrations_applied(self) -> tuple[str, ...]:
        """Migrations ``connect(migrations=...)`` applied when this database opened, in order."""
        return self._migrations_applied

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self._config.redacted_url}{state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the database is closed")
        if ASYNC:
            self._check_loop()

    if ASYNC:

        def _check_loop(self) -> None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not self._loop:
                raise InterfaceError(
                    "this Database was opened on another event loop; its connections belong "
                    "to that loop: open one Database per event loop (or use connect_sync "
                    "in threads)"
                )

    async def _analyze(self, sql: Any) -> SqlInfo:
        """``analyze(sql)``; a long text is scanned in a worker thread, off the event loop."""
        if ASYNC:  # noqa: SIM102 - the generator drops ``if ASYNC:`` blocks from the sync face
            if isinstance(sql, str) and len(sql) > BIG_SQL:
                return await asyncio.to_thread(analyze, sql)
        return analyze(sql)

    # -- queries ---------------------------------------------------------------------------------

    async def _run(
        self,
        kind: Op,
        sql: str,
        params: Any,
        arg: Column,
        timeout: float | None,
        scope: Scope | None = None,
    ) -> Any:
        """The one path every statement takes: check, dispatch, count. Kept flat: it is hot."""
        if scope is None:
            scope = self._scope.get()
        if self._closed:
            raise InterfaceError("the database is closed")
        if ASYNC:  # noqa: SIM102 - the generator drops ``if ASYNC:`` blocks from the sync face
            if asyncio.get_running_loop() is not self._loop:
                self._check_loop()
        try:
            info = _cache[sql]
        except (KeyError, TypeError):
            info = await self._analyze(sql)
        if kind is EXECUTE_MANY:
            if ASYNC:
                if len(params) > MANY_CHECKED_ON_LOOP:  # ~0.5 us a row: off the loop
                    await asyncio.to_thread(_check_many, info, params)
                else:
                    _check_many(info, params)
            else:
                _check_many(info, params)
        elif params is None:
            if info.order:  # raises, naming the missing parameters
                check_params(info, params)
        elif type(params) is not dict or (
            params.keys() != info.names  # the same names, no more and no fewer
            if info.single is None
            else len(params) != 1 or info.single not in params
        ):
            check_params(info, params)
        if info.lists is not None:  # ``IN :ids``: expanded (SQLite) or one array (PostgreSQL)
            info, params = bind_lists(info, params, self._backend.name, many=kind is EXECUTE_MANY)
        timeout = self._statement_timeout if timeout is None else check_timeout(timeout)
        waited = acquire_waited()
        start = perf_counter()
        try:
            if scope is None:
                if info.kind == TXCONTROL:
                    raise InterfaceError(_TXCONTROL_MESSAGE)
                backend = self._backend
                result = backend.run_now(kind, info, params, arg, timeout)
                if result is NOT_NOW:
                    result = await backend.run(kind, info, params, arg, timeout)
            else:
                result = await scope._execute(kind, info, params, arg, timeout)
        except Exception as exc:
            _failed(self._stats, sql, perf_counter() - start, acquire_waited() - waited, exc)
            raise
        elapsed = perf_counter() - start
        waited = acquire_waited() - waited
        if waited:  # execution time only: the wait for a connection is reported apart
            elapsed -= waited
        stats = self._stats
        stats.queries += 1
        stats.query_times.append(elapsed)
        limit = stats.slow_query_s
        if limit is not None and elapsed >= limit:
            stats.query_done(sql, elapsed, False, counted=True, waited=waited)
        return result

    def iterate(
        self,
        sql: str,
        params: Any = None,
        *,
        batch_size: int = 500,
        timeout: float | None = None,
    ) -> Rows:
        """Stream rows in batches; use ``async for`` (and ``async with`` to stop early)."""
        return Rows(self, None, sql, params, batch_size, check_timeout(timeout))

    # -- blocks ----------------------------------------------------------------------------------

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> Transaction:
        """A transaction block; nested blocks are savepoints."""
        check_timeout(timeout)
        return Transaction(self, isolation=isolation, readonly=readonly, timeout=timeout)

    def current_transaction(self) -> Transaction | None:
        """The innermost transaction block this task runs in (the one queries join), or None."""
        return innermost_transaction(self._scope.get())

    def connection(self) -> PinnedConnection:
        """A block that pins one connection for several statements, without a transaction."""
        return PinnedConnection(self)

    async def run_in_transaction(
        self,
        work: Callable[[Transaction], Awaitable[T]],
        *,
        retries: int = 5,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
        backoff: float = 0.02,
    ) -> T:
        """Run ``work(tx)`` in a transaction; re-run it on ``TransientError`` with jittered backoff.

        Inside another transaction ``work`` runs once in a savepoint: only the outermost
        transaction can be retried.
        """
        if retries < 0:
            raise InterfaceError("retries must be zero or more")
        attempt = 0
        while True:
            try:
                async with self.transaction(
                    isolation=isolation, readonly=readonly, timeout=timeout
                ) as tx:
                    return await work(tx)
            except TransientError:
                if attempt >= retries or self._scope.get() is not None:
                    raise
                attempt += 1
                self._stats.retries += 1
                await asleep(random.uniform(0.0, min(1.0, backoff * 2**attempt)))

    if ASYNC:
        # The bridge for sync code beside an async application (see awaitdb/_bridge.py); the
        # sync face has no loop to bridge to, so the generator drops this block.

        async def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
            """Run ``fn(view, *args, **kwargs)`` in a worker thread, ``view`` being a
            ``SyncView`` whose sync query and transaction methods use this database."""
            self._check_open()
            view = self.sync_view()
            return await asyncio.to_thread(fn, view, *args, **kwargs)

        def sync_view(self) -> SyncView:
            """A ``SyncView`` of this database for other threads; call it on the loop."""
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise InterfaceError(
                    "db.sync_view() must be called on the database's event loop (in async "
                    "code), then the view handed to the thread that uses it"
                ) from None
            return SyncView(self, loop)

    # -- state -----------------------------------------------------------------------------------

    def stats(self) -> StatsSnapshot:
        """A snapshot of pool gauges and query counters."""
        return self._stats.snapshot(self._backend.name, self._backend.pool_stats())

    async def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new work, let running work finish up to ``timeout`` seconds, then close."""
        if self._closed:
            return
        timeout = check_timeout(timeout, "close timeout")
        self._closed = True
        for hook in self._close_hooks:
            await hook()
        self._close_hooks.clear()
        backend = self._backend
        deadline = None if timeout is None else time.monotonic() + timeout
        while backend.busy() and (deadline is None or time.monotonic() < deadline):
            await asleep(CLOSE_POLL_S)
        await backend.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _failed(stats: Stats, sql: str, elapsed: float, waited: float, exc: Exception) -> None:
    """Count a failed statement; one that never got a connection was never run, so not timed."""
    if isinstance(exc, PoolTimeout | PoolOverloaded):
        return  # counted by the pool (acquire_timeouts / acquire_overloads)
    stats.query_done(sql, elapsed - waited, True, waited=waited)


async def open_database(config: Config) -> Database:
    """Open the backend's connections for a validated ``config`` and return the database.

    ``migrations=`` is not handled here but where databases are opened (``awaitdb/_connect.py``):
    the core never imports the migrator.
    """
    from .._backends import open_backend

    backend = await open_backend(config)
    return Database(backend, config)
