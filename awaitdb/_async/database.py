"""``Database``: the object ``connect()`` returns; queries, transactions, stats and close.

Outside a block every call runs in autocommit on a pooled connection (one hand-off or one round
trip). Inside ``transaction()`` or ``connection()`` the call goes to the block's connection,
found through a context variable, so helpers that only know ``db`` join the caller's
transaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from .._compat import ASYNC, asleep
from .._config import Config
from .._errors import InterfaceError, TransientError
from .._ops import EXECUTE_MANY
from .._sql import _cache, analyze, check_params
from .._stats import StatsSnapshot
from .backend import NOT_NOW, Backend
from .queries import Queries
from .rows import Rows
from .transaction import PinnedConnection, Scope, Transaction, innermost_transaction

__all__ = ["Database", "open_database"]

T = TypeVar("T")


class Database(Queries):
    """A pool of connections to one database, with the query methods of ``Queries``."""

    def __init__(self, backend: Backend, config: Config) -> None:
        self._backend = backend
        self._config = config
        self._stats = backend.stats
        self._statement_timeout = config.statement_timeout
        self._scope: ContextVar[Scope | None] = ContextVar(f"awaitdb-{id(self)}", default=None)
        self._closed = False

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

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self._config.redacted_url}{state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the database is closed")

    # -- queries ---------------------------------------------------------------------------------

    async def _run(
        self,
        kind: int,
        sql: str,
        params: Any,
        arg: Any,
        timeout: float | None,
        scope: Scope | None = None,
    ) -> Any:
        """The one path every statement takes: check, dispatch, count. Kept flat: it is hot."""
        if scope is None:
            scope = self._scope.get()
        if self._closed:
            raise InterfaceError("the database is closed")
        info = _cache.get(sql) or analyze(sql)
        if kind == EXECUTE_MANY:
            for one in params:
                check_params(info, one)
        elif params is None or type(params) is not dict or params.keys() != info.names:
            check_params(info, params)
        if timeout is None:
            timeout = self._statement_timeout
        stats = self._stats
        start = time.perf_counter()
        try:
            if scope is None:
                backend = self._backend
                result = backend.run_now(kind, info, params, arg, timeout)
                if result is NOT_NOW:
                    result = await backend.run(kind, info, params, arg, timeout)
            else:
                result = await scope._execute(kind, info, params, arg, timeout)
        except Exception:
            stats.query_done(sql, time.perf_counter() - start, True)
            raise
        elapsed = time.perf_counter() - start
        stats.queries += 1
        stats.query_times.append(elapsed)
        if stats.slow_query_s is not None and elapsed >= stats.slow_query_s:
            stats.query_done(sql, elapsed, False, counted=True)
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
        return Rows(self, None, sql, params, batch_size, timeout)

    # -- blocks ----------------------------------------------------------------------------------

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> Transaction:
        """A transaction block; nested blocks are savepoints."""
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
                await asleep(random.uniform(0.0, min(1.0, backoff * 2**attempt)))

    # -- state -----------------------------------------------------------------------------------

    def stats(self) -> StatsSnapshot:
        """A snapshot of pool gauges and query counters."""
        return self._stats.snapshot(self._backend.name, self._backend.pool_stats())

    async def close(self, timeout: float | None = 10.0) -> None:
        """Refuse new work, let running work finish up to ``timeout`` seconds, then close."""
        if self._closed:
            return
        self._closed = True
        await self._backend.close(timeout)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def open_database(config: Config) -> Database:
    """Open the backend's connections for a validated ``config`` and return the database.

    With ``migrations="dir"`` pending migrations are applied first, under the migration lock,
    so several instances of an application can start at once.
    """
    from .._backends import open_backend

    backend = await open_backend(config)
    db = Database(backend, config)
    directory = config.get("migrations", None)
    if directory:
        try:
            if ASYNC:
                from .._migrate.runner import migrate

                await migrate(db, directory)
            else:
                from .._migrate.sync import migrate_in_thread

                migrate_in_thread(config)
        except BaseException:
            await db.close()
            raise
    return db
