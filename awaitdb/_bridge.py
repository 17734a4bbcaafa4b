"""Sync code beside an async application, on the async database's own pool and writer.

``await db.run_sync(fn, *args)`` runs ``fn(view, *args)`` in a worker thread; ``db.sync_view()``
returns the same kind of view for any other thread. A ``SyncView`` has the sync face's query
and transaction methods; each call is handed to the database's event loop
(``asyncio.run_coroutine_threadsafe``) and the thread waits for its result. So there is one
pool and, on SQLite, one writer: sync and async writes are serialized by awaitdb, never by
SQLite's file lock, and never fail with "database is locked".

A transaction opened through a view is a real transaction of the async database: one loop
task holds ``async with db.transaction()`` open while the thread runs statements in it (the
thread's context carries the transaction, as a task's does), and commits or rolls back when
the thread leaves the ``with`` block. Inside ``run_sync`` called from an async transaction,
the view's statements join that transaction.

Calling a view from the loop's own thread would wait for the loop forever: it raises
``InterfaceError`` instead; so does a call made or still waiting when the loop has stopped or
closed (a waiting thread checks every 0.1 s that the loop still runs), never a hang.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import random
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InterfaceError, TransientError
from ._record import Record, convert
from ._stats import StatsSnapshot

if TYPE_CHECKING:
    from ._async.database import Database
    from ._async.rows import Rows

__all__ = ["SyncView"]

T = TypeVar("T")
Params = Mapping[str, Any] | None


class _Rollback(Exception):
    """Raised inside the loop task holding a view's transaction: roll it back."""


class SyncView:
    """The sync face's query and transaction methods, run by an async ``Database`` on its loop.

    Use it from threads other than the loop's (``await db.run_sync(fn)`` or
    ``db.sync_view()``); it shares the database's pool, writer, transactions and stats.
    """

    __slots__ = ("_db", "_loop", "_loop_thread")

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self._db = db
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def __repr__(self) -> str:
        return f"<SyncView of {self._db!r}>"

    @property
    def database(self) -> Database:
        """The async database this view forwards to."""
        return self._db

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.get_ident() == self._loop_thread:
            coro.close()
            raise InterfaceError(
                "a SyncView was called on its event loop's thread, where it would wait for "
                "itself forever: use the async Database there, and the view from other threads"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError as exc:  # the loop is closed
            coro.close()
            raise InterfaceError(f"{_STOPPED} ({exc})") from None
        self._wait([future], coro)
        return _result(future)

    def _wait(
        self,
        futures: list[concurrent.futures.Future[Any]],
        coro: Coroutine[Any, Any, Any] | None = None,
    ) -> None:
        """Wait until one of ``futures`` is done; ``InterfaceError`` (never a hang) when the
        loop stops before that: nothing would ever finish them."""
        while True:
            done, _pending = concurrent.futures.wait(
                futures, timeout=_POLL_S, return_when=concurrent.futures.FIRST_COMPLETED
            )
            if done:
                return
            if not self._loop.is_running():
                for future in futures:
                    future.cancel()
                if coro is not None and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                    coro.close()  # never started: it never will
                raise InterfaceError(_STOPPED)

    def _soon(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError as exc:  # the loop is closed
            raise InterfaceError(f"{_STOPPED} ({exc})") from None

    # -- queries ---------------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = None, *, timeout: float | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        return self._call(self._db.execute(sql, params, timeout=timeout))

    def execute_many(
        self,
        sql: str,
        params_seq: Iterable[Mapping[str, Any]],
        *,
        timeout: float | None = None,
    ) -> int:
        """Run a statement once per parameter mapping, atomically; return the rows changed."""
        return self._call(self._db.execute_many(sql, list(params_seq), timeout=timeout))

    def fetch_one(
        self,
        sql: str,
        params: Params = None,
        *,
        as_: type[Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The first row, or ``None``; built into ``as_`` if given."""
        record = self._call(self._db.fetch_one(sql, params, timeout=timeout))
        return record if as_ is None or record is None else convert(record, as_)

    def fetch_all(
        self,
        sql: str,
        params: Params = None,
        *,
        as_: type[Any] | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Every row, as records or built into ``as_``."""
        records = self._call(self._db.fetch_all(sql, params, timeout=timeout))
        return records if as_ is None else [convert(r, as_) for r in records]

    def fetch_val(
        self,
        sql: str,
        params: Params = None,
        *,
        column: int | str = 0,
        timeout: float | None = None,
    ) -> Any:
        """One value of the first row, or ``None`` without rows."""
        return self._call(self._db.fetch_val(sql, params, column=column, timeout=timeout))

    def iterate(
        self,
        sql: str,
        params: Params = None,
        *,
        batch_size: int = 500,
        timeout: float | None = None,
    ) -> Iterator[Record]:
        """Stream rows, one hand-off to the loop per batch of ``batch_size``."""
        rows = self._db.iterate(sql, params, batch_size=batch_size, timeout=timeout)
        try:
            while True:
                batch = self._call(_pull(rows, batch_size))
                yield from batch
                if len(batch) < batch_size:
                    return
        finally:
            self._call(rows.aclose())

    # -- transactions ------------------------------------------------------------------------

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> AbstractContextManager[SyncView]:
        """A real transaction of the async database; nested blocks are savepoints."""
        return self._block(
            lambda db: db.transaction(isolation=isolation, readonly=readonly, timeout=timeout)
        )

    def connection(self) -> AbstractContextManager[SyncView]:
        """One pinned connection of the async database for several statements, no BEGIN."""
        return self._block(lambda db: db.connection())

    def stats(self) -> StatsSnapshot:
        """The async database's stats (the view's statements are counted there)."""
        return self._db.stats()

    @contextmanager
    def _block(self, open_block: Callable[[Database], Any]) -> Iterator[SyncView]:
        entered: concurrent.futures.Future[tuple[Any, asyncio.Future[bool]]] = (
            concurrent.futures.Future()
        )
        held = self._call_later(_hold(self._db, open_block, entered))
        self._wait([entered, held])
        if not entered.done():
            _result(held)  # BEGIN failed: raise its error
        tx, finish = entered.result()
        token = self._db._scope.set(tx)  # this thread's calls now run in the transaction
        try:
            yield self
        except BaseException:
            self._db._scope.reset(token)
            self._soon(_settle, finish, False)
            self._wait([held])
            try:
                _result(held)
            except _Rollback:
                pass
            raise
        self._db._scope.reset(token)
        self._soon(_settle, finish, True)
        self._wait([held])
        _result(held)  # COMMIT's error, if any

    def _call_later(self, coro: Coroutine[Any, Any, None]) -> concurrent.futures.Future[None]:
        if threading.get_ident() == self._loop_thread:
            coro.close()
            raise InterfaceError("a SyncView was called on its event loop's thread")
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError as exc:  # the loop is closed
            coro.close()
            raise InterfaceError(f"{_STOPPED} ({exc})") from None

    def run_in_transaction(
        self,
        work: Callable[[SyncView], T],
        *,
        retries: int = 5,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
        backoff: float = 0.02,
    ) -> T:
        """Run ``work(view)`` in a transaction; re-run it on ``TransientError`` with backoff."""
        if retries < 0:
            raise InterfaceError("retries must be zero or more")
        attempt = 0
        while True:
            try:
                with self.transaction(isolation=isolation, readonly=readonly, timeout=timeout):
                    return work(self)
            except TransientError:
                if attempt >= retries or self._db._scope.get() is not None:
                    raise
                attempt += 1
                self._db._stats.retries += 1
                time.sleep(random.uniform(0.0, min(1.0, backoff * 2**attempt)))


_POLL_S = 0.1  # how often a waiting thread checks that the loop still runs
_STOPPED = (
    "the database's event loop is not running (it stopped or closed before the call finished): "
    "a SyncView works only while the loop that made it runs; close the database before the loop"
)


def _result(future: concurrent.futures.Future[T]) -> T:
    """``future.result()``, with the loop's shutdown (its tasks cancelled, the loop closed)
    reported as ``InterfaceError`` rather than a raw ``CancelledError``/``RuntimeError``."""
    try:
        return future.result()
    except concurrent.futures.CancelledError:
        raise InterfaceError(_STOPPED) from None
    except RuntimeError as exc:
        if "loop is closed" in str(exc) or "no running event loop" in str(exc):
            raise InterfaceError(f"{_STOPPED} ({exc})") from exc
        raise


async def _pull(rows: Rows, size: int) -> list[Record]:
    batch: list[Record] = []
    async for record in rows:
        batch.append(record)
        if len(batch) >= size:
            break
    return batch


async def _hold(
    db: Database,
    open_block: Callable[[Database], Any],
    entered: concurrent.futures.Future[tuple[Any, asyncio.Future[bool]]],
) -> None:
    """Hold a transaction or pinned block open in one loop task until the thread says how it
    ended (``finish``: True to commit, False to roll back)."""
    finish: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    async with open_block(db) as tx:
        entered.set_result((tx, finish))
        if not await finish:
            raise _Rollback


def _settle(finish: asyncio.Future[bool], commit: bool) -> None:
    if not finish.done():
        finish.set_result(commit)
