"""The async SQLite backend: one writer thread, N reader threads, and tiny reads on the loop.

Routing of an autocommit statement:

- a read whose earlier runs were tiny runs inline on the loop thread, on a dedicated read-only
  connection, while the current loop iteration has run less than ``INLINE_BUDGET_S`` (wall
  time, so the caller's own work counts too); past that the caller lets the loop turn and tries
  again, and only then falls back to a reader thread. A read that runs past ``INLINE_QUERY_S``
  of VM steps is aborted by a progress handler; a value, SQL text or parameter list too big for
  the loop is refused by the inline connection's limits; work SQLite cannot interrupt is caught
  when a run's wall time past 0.5 ms is confirmed by the loop thread's CPU time. Such a
  statement goes to the threads until its runs there are cheap again (``inline.py``), so the
  loop is never held for long;
- other reads go to the least busy reader thread (WAL: readers never block the writer);
- writes go to the writer thread, which commits concurrent writes together (group commit).

Sessions (transactions, ``connection()``, streaming cursors) pin a worker through a FIFO pool:
write sessions the writer, read-only ones a reader. ``:memory:`` uses the writer for everything.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections.abc import Mapping
from typing import Any

from .._async.backend import NOT_NOW
from .._async.pool import Pool
from .._config import Config
from .._errors import Error, InterfaceError
from .._hooks import run_hook
from .._ops import Column, Op
from .._record import Record
from .._sql import SqlInfo
from .._stats import Stats, note_acquire_wait
from .common import (
    SQLiteTarget,
    combined_gauges,
    is_busy,
    is_interrupt,
    is_readonly_refusal,
    open_connection,
    run_op,
)
from .common import translate as _translate
from .deadline import Watch
from .inline import InlinePolicy, limit_inline, too_big_inline
from .worker import CURSOR_CLOSE, CURSOR_FETCH, CURSOR_OPEN, RESET, STOP, Job, Worker

__all__ = ["SQLiteBackend"]

INLINE_BUDGET_S = 0.0005  # wall time a loop iteration may spend on inline reads
INLINE_QUERY_S = 0.0005  # one inline read running longer than this is aborted and handed off
INLINE_YIELDS = 16  # loop turns a read waits for inline budget before a thread takes it


class WorkerSession:
    """A worker lent to one transaction, pinned block or cursor."""

    __slots__ = ("_backend", "cursors", "in_transaction", "readonly", "worker")

    def __init__(self, backend: SQLiteBackend, worker: Worker, readonly: bool) -> None:
        self._backend = backend
        self.worker = worker
        self.readonly = readonly
        self.in_transaction = False  # updated by the worker thread after each session job
        self.cursors: set[Any] = set()  # open sqlite3 cursors: touched by the worker thread only

    async def run(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        return await self.worker.call(Job(kind, info, params, arg, self), timeout)

    async def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> Any:
        return await self.worker.call(Job(CURSOR_OPEN, info, params, None, self), timeout)

    async def fetch_cursor(
        self, cursor: Any, size: int, timeout: float | None = None
    ) -> list[Record]:
        rows: list[Record] = await self.worker.call(
            Job(CURSOR_FETCH, None, None, (cursor, size), self), timeout
        )
        return rows

    async def close_cursor(self, cursor: Any) -> None:
        if self.worker.alive and not self.worker.stopped:
            self.worker.post(Job(CURSOR_CLOSE, None, None, cursor, self))


class SQLiteBackend:
    """Implements the async ``Backend`` protocol over worker threads."""

    name = "sqlite"

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.stats = Stats(config.slow_query_ms)
        self._config = config
        self._loop = loop
        self._target = SQLiteTarget(config)
        self._writer = Worker(self._target, loop, self.stats, writer=True, name="awaitdb-writer")
        self._readers = [
            Worker(self._target, loop, self.stats, writer=False, name=f"awaitdb-reader-{i}")
            for i in range(self._target.readers)
        ]
        self._shared_readers = list(self._readers)  # readers not pinned by a session
        timeout = config.acquire_timeout
        self._writer_pool: Pool[Worker] = Pool(
            "sqlite-writer",
            stats=self.stats,
            max_size=1,
            acquire_timeout=timeout,
            max_waiting=config.max_waiting,
            items=[self._writer],
        )
        self._reader_pool: Pool[Worker] | None = None
        if self._readers:
            self._reader_pool = Pool(
                "sqlite-readers",
                stats=self.stats,
                max_size=len(self._readers),
                acquire_timeout=timeout,
                max_waiting=config.max_waiting,
                items=list(self._readers),
            )
        self._inline: sqlite3.Connection | None = None
        self._inline_started = 0.0
        self._inline_cpu = 0.0
        self._inline_reset_pending = False
        self._inline_watch = Watch()  # the inline read's deadline; Ctrl-C raised in it
        self._policy = InlinePolicy()
        self._closing = False
        self._sessions = 0

    @classmethod
    async def open(cls, config: Config) -> SQLiteBackend:
        backend = cls(config, asyncio.get_running_loop())
        workers = [backend._writer, *backend._readers]
        try:
            await backend._writer.start()  # the writer first: it sets WAL mode
            await asyncio.gather(*(reader.start() for reader in backend._readers))
            if backend._readers and bool(config.get("inline_reads", True)):
                inline = open_connection(backend._target, readonly=True)
                await run_hook(backend._target.on_connect, inline)
                backend._inline = inline
                backend._inline_watch.arm(backend._inline)
                limit_inline(backend._inline)
        except BaseException:
            for worker in workers:
                worker.stop()
            raise
        weakref.finalize(backend, _stop_workers, workers, backend._inline)
        return backend

    # -- autocommit ---------------------------------------------------------------------------

    def run_now(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        """Answer a tiny read inline on the loop thread when the budget allows, else NOT_NOW."""
        conn = self._inline
        if (
            conn is None
            or not info.inline_ok
            or info.is_write
            or not kind.returns_rows
            or (timeout is not None and timeout <= INLINE_QUERY_S)
        ):
            return NOT_NOW
        now = time.perf_counter()
        if not self._inline_reset_pending:
            # First inline read of this loop iteration: open the budget, close it next turn.
            self._inline_reset_pending = True
            self._inline_started = now
            self._inline_cpu = time.thread_time()  # once per loop iteration, not per read
            self._loop.call_soon(self._reset_inline)
        elif now - self._inline_started >= INLINE_BUDGET_S:
            return NOT_NOW  # this iteration has run long enough: the loop must turn
        watch = self._inline_watch
        watch.deadline = now + INLINE_QUERY_S
        try:
            result = run_op(conn, kind, info, params, arg)
        except sqlite3.Error as exc:
            if watch.pending is not None:  # Ctrl-C on the loop thread: KeyboardInterrupt, as is
                watch.settle(conn)
            if is_interrupt(exc) or too_big_inline(exc):
                self._policy.to_threads(info)  # too slow or too big for the loop, for now
                return NOT_NOW
            if is_readonly_refusal(exc):
                info.is_write = True
                return NOT_NOW
            if is_busy(exc):
                return NOT_NOW  # a thread waits for the lock; the loop must not
            raise _translate(exc) from exc
        except (InterfaceError, OverflowError) as exc:
            raise _translate(exc) from exc
        if time.perf_counter() - now > INLINE_QUERY_S:
            # Work the progress handler could not cut short, or only a preempted thread: the
            # loop thread's CPU time this iteration tells which.
            self._policy.slow_run(info, time.thread_time() - self._inline_cpu)
        self.stats.inline_reads += 1
        return result

    async def run(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        if not info.is_write:
            if info.inline_ok and kind.returns_rows and self._inline is not None:
                # The loop's inline budget is spent: let the loop turn, then try again inline.
                for _ in range(INLINE_YIELDS):
                    await asyncio.sleep(0)
                    result = self.run_now(kind, info, params, arg, timeout)
                    if result is not NOT_NOW:
                        return result
            if not info.is_write:
                reader = self._pick_reader()
                if reader is not None:
                    job = Job(kind, info, params, arg)
                    job.probe = not info.inline_ok and self._inline is not None
                    try:
                        result = await reader.call(job, timeout)
                    except Error:
                        if not job.reroute:
                            raise
                    else:
                        if job.probe:  # kept off the loop: is it cheap enough to come back?
                            self._policy.threaded_run(info, job.cpu)
                        return result
                    info.is_write = True  # a WITH ... INSERT: the writer takes it from now on
        writer = self._writer
        job = Job(kind, info, params, arg)
        try:
            if timeout is not None:
                return await writer.call(job, timeout)
            future = writer.submit(job)  # Worker.call without its frame: writes are the hot path
            try:
                return await future
            except asyncio.CancelledError:
                writer.cancel(job)
                raise
        finally:
            if job.waited > 0:  # it waited behind a session's transaction: acquire wait
                note_acquire_wait(job.waited)
                self.stats.acquisitions += 1
                self.stats.acquire_waits.append(job.waited)

    def _pick_reader(self) -> Worker | None:
        readers = self._shared_readers
        if not readers:
            return None
        best = readers[0]
        if best.pending:
            for reader in readers:
                if reader.pending < best.pending:
                    best = reader
        return best

    def _reset_inline(self) -> None:
        self._inline_reset_pending = False

    # -- sessions -----------------------------------------------------------------------------

    async def acquire(self, *, write: bool, timeout: float | None) -> WorkerSession:
        if write or self._reader_pool is None:
            worker = await self._writer_pool.acquire(timeout)
        else:
            worker = await self._reader_pool.acquire(timeout)
            self._shared_readers.remove(worker)
        self._sessions += 1
        return WorkerSession(self, worker, readonly=not write)

    def release(self, session: Any, *, discard: bool = False) -> None:
        assert isinstance(session, WorkerSession)
        worker = session.worker
        self._sessions -= 1
        if worker.alive and not worker.stopped:
            worker.post(Job(RESET, None, None, None, session))
        if worker is self._writer:
            self._writer_pool.release(worker)
        else:
            assert self._reader_pool is not None
            self._shared_readers.append(worker)
            self._reader_pool.release(worker)

    # -- state --------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, int]:
        return combined_gauges(self._writer_pool, self._reader_pool)

    def busy(self) -> bool:
        return self._sessions > 0 or any(w.pending for w in (self._writer, *self._readers))

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._writer_pool.close()
        if self._reader_pool is not None:
            self._reader_pool.close()
        workers = [self._writer, *self._readers]
        for worker in workers:
            worker.interrupt()
            worker.stop()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        while any(worker.alive for worker in workers):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # let the workers' last deliveries run


def _stop_workers(workers: list[Worker], inline: sqlite3.Connection | None) -> None:
    """Finalizer for a backend that was never closed: let its threads exit."""
    for worker in workers:
        if worker.alive:
            worker._queue.put(Job(STOP, None, None, None))
    if inline is not None:
        try:
            inline.close()
        except sqlite3.Error:  # pragma: no cover
            pass
