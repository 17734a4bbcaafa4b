"""The async SQLite backend: one writer thread, N reader threads, and tiny reads on the loop.

Routing of an autocommit statement:

- a read runs inline on the loop thread, on a dedicated read-only connection, while the current
  loop iteration has run less than ``INLINE_BUDGET_S`` (wall time, so the caller's own work
  counts too); past that the read waits for the loop to turn (parked in a FIFO that the next
  iteration wakes), never for a thread. A read that costs 0.5 ms of the loop thread's CPU in
  VM steps is aborted by a progress handler; a value, SQL text or parameter list too big for
  the loop is refused by the inline connection's limits; work SQLite cannot interrupt is caught
  by measuring a suspect's CPU time. Such a statement goes to the threads until its runs there
  are cheap again: what this backend learned (``inline.py``) is its own and is unlearned;
- other reads go to the least busy reader thread (WAL: readers never block the writer);
- writes go to the writer thread, which commits concurrent writes together (group commit).

Sessions (transactions, ``connection()``, streaming cursors) pin a worker through a FIFO pool:
write sessions the writer, read-only ones a reader. ``:memory:`` uses the writer for everything.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from .._async.backend import NOT_NOW
from .._async.pool import Pool
from .._config import Config
from .._errors import Error, InterfaceError
from .._hooks import run_hook
from .._ops import Column, Op
from .._record import Record
from .._sql import TXCONTROL, SqlInfo
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
from .inline import SLOW_CPU_S, SUSPECT, WRITES, InlinePolicy, Off, limit_inline, too_big_inline
from .loop_writer import BEGINS, ENDS, LATER, LOOP_TURNS, LoopWriter, qualifies, tx_role
from .worker import (
    CHECKPOINT,
    CURSOR_CLOSE,
    CURSOR_FETCH,
    CURSOR_OPEN,
    RESET,
    STOP,
    Job,
    Worker,
)

__all__ = ["SQLiteBackend"]

INLINE_BUDGET_S = 0.0005  # wall time a loop iteration may spend on inline reads
INLINE_QUERY_S = 0.0005  # an inline run longer than this in wall time raises a suspicion
_NEVER = math.inf  # no deadline
WAKE_MAX = 128  # reads one loop turn wakes at most


class WorkerSession:
    """A worker lent to one transaction, pinned block or cursor.

    Its BEGIN is deferred: it travels with the first statement (one hop, not two), and a
    transaction that ran nothing costs nothing. On the writer, that first statement and the
    rest may run on the loop thread (``loop_writer.py``).
    """

    __slots__ = (
        "_backend",
        "_loop_writer",
        "begin",
        "cursors",
        "in_transaction",
        "readonly",
        "threaded",
        "worker",
    )

    def __init__(
        self, backend: SQLiteBackend, worker: Worker, readonly: bool, loop_writer: Any
    ) -> None:
        self._backend = backend
        self.worker = worker
        self.readonly = readonly
        self._loop_writer: LoopWriter | None = loop_writer
        self.in_transaction = False  # updated after each statement, by whoever ran it
        self.cursors: set[Any] = set()  # open sqlite3 cursors: touched by the worker thread only
        self.begin: str | None = None  # a BEGIN not sent yet: it goes with the next statement
        self.threaded = False  # a job of this session went to the thread: it resets the end

    async def run(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        if info.kind == TXCONTROL and self._defer(info):
            return 0
        writer = self._loop_writer
        if writer is not None:
            for _ in range(LOOP_TURNS):
                result = writer.run(self, kind, info, params, arg, timeout)
                if result is not LATER:
                    break
                await asyncio.sleep(0)  # the loop's inline budget is spent: let it turn
            if result is not NOT_NOW and result is not LATER:
                return result
            writer.hand_off(self)
            job = Job(kind, info, params, arg, self)
            job.probe = writer.wants_probe(info)
            result = await self._call(job, timeout)
            if job.probe:  # on the thread: is it cheap enough for the loop next time?
                writer.threaded_run(info, job.cpu)
            return result
        return await self._call(Job(kind, info, params, arg, self), timeout)

    def _defer(self, info: SqlInfo) -> bool:
        """Keep a BEGIN for the next statement; a COMMIT or ROLLBACK of one never sent is
        nothing to do. True when ``info`` was handled here."""
        role = tx_role(info.sql)
        if role == BEGINS:
            if self.begin is None and not self.in_transaction:
                self.begin = info.sql
                self.in_transaction = True
                return True
            return False
        if self.begin is not None and role == ENDS:
            self.begin = None
            self.in_transaction = False
            return True
        return False

    async def _call(self, job: Job, timeout: float | None) -> Any:
        self.threaded = True
        begin = self.begin
        if begin is None:
            return await self.worker.call(job, timeout)
        job.begin, self.begin = begin, None
        try:
            return await self.worker.call(job, timeout)
        except BaseException:
            if not job.started:  # cancelled or timed out before it ran: so did its BEGIN,
                self.begin = begin  # which the next statement carries (never autocommit)
            raise

    async def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> Any:
        if self._loop_writer is not None:
            self._loop_writer.hand_off(self)
        return await self._call(Job(CURSOR_OPEN, info, params, None, self), timeout)

    async def fetch_cursor(
        self, cursor: Any, size: int, timeout: float | None = None
    ) -> list[Record]:
        if self._loop_writer is not None:
            self._loop_writer.hand_off(self)
        rows: list[Record] = await self._call(
            Job(CURSOR_FETCH, None, None, (cursor, size), self), timeout
        )
        return rows

    async def close_cursor(self, cursor: Any) -> None:
        if self.worker.alive and not self.worker.stopped:
            if self._loop_writer is not None:
                self._loop_writer.hand_off(self)
            self.threaded = True
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
        self._budget_start = 0.0  # when this loop iteration's first inline read began; 0: none
        self._tick_pending = False  # ``_tick`` is scheduled: it closes the budget
        self._spent = False  # a read found the budget spent since the last tick
        self._handoff = False  # run_now said NOT_NOW for a thread (busy, a timeout), not budget
        self._parked: deque[asyncio.Future[None]] = deque()  # reads waiting for the loop to turn
        self._wake_n = 1  # how many of them the next tick wakes
        self._inline_watch = Watch(cpu_limit=SLOW_CPU_S)  # limits of an inline read; Ctrl-C
        self._policy = InlinePolicy()  # what this backend learned about its statements
        self._learned = self._policy.learned
        self._loop_writer: LoopWriter | None = None
        if bool(config.get("inline_transactions", True)) and qualifies(self._target):
            self._loop_writer = LoopWriter(
                self._writer, self._inline_budget, self._checkpoint, self._target.memory
            )
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
            or not kind.returns_rows
            or info.is_write
            or not info.inline_ok
            or (timeout is not None and timeout <= INLINE_QUERY_S)
        ):
            return NOT_NOW
        learned = self._learned.get(info)
        if learned is not None and learned is not SUSPECT:
            return NOT_NOW  # kept off the loop for now, or it writes
        now = time.perf_counter()
        if not self._budget_start:
            # First inline read since the loop last turned: open the budget; the tick closes it.
            self._budget_start = now
            if not self._tick_pending:
                self._tick_pending = True
                self._loop.call_soon(self._tick)
        elif now - self._budget_start >= INLINE_BUDGET_S:
            self._spent = True
            return NOT_NOW  # this iteration has run long enough: the loop must turn
        watch = self._inline_watch
        watch.deadline = _NEVER if timeout is None else now + timeout  # the caller's, if any
        watch.cpu_deadline = 0.0  # the progress handler starts this read's CPU clock
        cpu = time.thread_time() if learned is SUSPECT else 0.0
        try:
            result = run_op(conn, kind, info, params, arg)
        except sqlite3.Error as exc:
            if watch.pending is not None:  # Ctrl-C on the loop thread: KeyboardInterrupt, as is
                watch.settle(conn)
            if is_interrupt(exc):
                if watch.cpu_deadline and time.thread_time() >= watch.cpu_deadline:
                    self._policy.to_threads(info)  # it costs too much CPU for the loop, for now
                else:
                    self._handoff = True  # the caller's timeout ran out: a thread has it whole
                return NOT_NOW
            if too_big_inline(exc):
                self._policy.to_threads(info)  # too big for the loop, for now
                return NOT_NOW
            if is_readonly_refusal(exc):
                self._policy.writes(info)
                return NOT_NOW
            if is_busy(exc):
                self._handoff = True  # a thread waits for the lock; the loop must not
                return NOT_NOW
            raise _translate(exc) from exc
        except (InterfaceError, OverflowError) as exc:
            raise _translate(exc) from exc
        if learned is SUSPECT:
            self._policy.measured(info, time.thread_time() - cpu)
        elif time.perf_counter() - now > INLINE_QUERY_S:
            # Work SQLite could not interrupt (count(*) of a big table), or a preempted thread?
            # Measure the next run's CPU time alone.
            self._policy.suspect(info)
        self.stats.inline_reads += 1
        return result

    def _tick(self) -> None:
        """The loop turned: a fresh inline budget; wake the reads that waited for it.

        Wakes one waiting read more each time the woken left budget unused, half as many each
        time they ran out of it: tasks that read in a loop are woken one at a time (each then
        reads until the budget is spent), one-shot reads many at a time.
        """
        self._tick_pending = False
        self._budget_start = 0.0
        parked = self._parked
        if parked:
            n = self._wake_n
            n = max(1, n >> 1) if self._spent else min(n << 1, WAKE_MAX)
            self._wake_n = n
            while n and parked:
                future = parked.popleft()
                if not future.done():
                    future.set_result(None)
                    n -= 1
            self._tick_pending = True
            self._loop.call_soon(self._tick)  # after the woken tasks' steps
        self._spent = False

    async def _wait_inline(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        """Wait for the loop to turn, then read inline; NOT_NOW if a thread must run it."""
        parked = self._parked
        first = True
        while True:
            future = self._loop.create_future()
            if first:
                parked.append(future)
            else:
                parked.appendleft(future)  # woken but beaten to the budget: first next time
            if not self._tick_pending:
                self._tick_pending = True
                self._loop.call_soon(self._tick)
            await future
            result = self.run_now(kind, info, params, arg, timeout)
            if result is not NOT_NOW or self._handoff or self._inline is None:
                return result
            learned = self._learned.get(info)
            if learned is not None and learned is not SUSPECT:
                return NOT_NOW  # learned meanwhile: off the loop, or it writes
            first = False  # the budget was spent again before this read's turn

    async def run(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        if not info.is_write:
            learned = self._learned.get(info)
            handoff, self._handoff = self._handoff, False
            if (
                (learned is None or learned is SUSPECT)
                and not handoff
                and self._inline is not None
                and kind.returns_rows
                and info.inline_ok
                and (timeout is None or timeout > INLINE_QUERY_S)
            ):
                # The loop's inline budget is spent: wait for the loop to turn, not for a thread.
                result = await self._wait_inline(kind, info, params, arg, timeout)
                if result is not NOT_NOW:
                    return result
                learned = self._learned.get(info)
                self._handoff = False
            if learned is not WRITES:
                reader = self._pick_reader()
                if reader is not None:
                    job = Job(kind, info, params, arg)
                    job.probe = isinstance(learned, Off)
                    try:
                        result = await reader.call(job, timeout)
                    except Error:
                        if not job.reroute:
                            raise
                    else:
                        if job.probe:  # kept off the loop: is it cheap enough to come back?
                            self._policy.threaded_run(info, job.cpu)
                        return result
                    self._policy.writes(info)  # a WITH ... INSERT: the writer takes it from now on
        writer = self._writer
        job = Job(kind, info, params, arg)
        if not info.is_write and self._learned.get(info) is WRITES:
            job.reroute = True  # a write behind a read's first keyword: the writer checks it so
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

    def _checkpoint(self) -> None:
        """A passive WAL checkpoint for commits made on the loop, on the writer's thread: there
        no commit runs beside it, so it completes and the next write restarts the log (on a
        reader it would race the loop's commits and the log would only grow)."""
        writer = self._writer
        if not self._target.memory and writer.alive and not writer.stopped:
            writer.post(Job(CHECKPOINT, None, None, None))

    def _inline_budget(self, now: float) -> bool:
        """Open this loop iteration's inline budget, or say whether some is left (inline reads
        and transactions on the loop share it; ``_tick`` closes it when the loop turns)."""
        if not self._budget_start:
            self._budget_start = now
            if not self._tick_pending:
                self._tick_pending = True
                self._loop.call_soon(self._tick)
            return True
        if now - self._budget_start >= INLINE_BUDGET_S:
            self._spent = True
            return False
        return True

    # -- sessions -----------------------------------------------------------------------------

    def writes(self, info: SqlInfo, refusal: BaseException | None = None) -> bool:
        if refusal is not None and is_readonly_refusal(refusal.__cause__ or refusal):
            self._policy.writes(info)
            return True
        return info.is_write or self._learned.get(info) is WRITES

    async def acquire(self, *, write: bool, timeout: float | None) -> WorkerSession:
        if write or self._reader_pool is None:
            worker = await self._writer_pool.acquire(timeout)
        else:
            worker = await self._reader_pool.acquire(timeout)
            self._shared_readers.remove(worker)
        self._sessions += 1
        on_loop = self._loop_writer if worker is self._writer else None
        return WorkerSession(self, worker, not write, on_loop)

    def release(self, session: Any, *, discard: bool = False) -> None:
        assert isinstance(session, WorkerSession)
        worker = session.worker
        self._sessions -= 1
        loop_writer = session._loop_writer
        clean = loop_writer.end(session) if loop_writer is not None else True
        if session.threaded and clean:
            # Nothing in flight on the thread (``pending`` 0): what it last told is the truth,
            # and a session that left no transaction and no cursor needs no RESET hop.
            clean = not (worker.pending or session.in_transaction or session.cursors)
        if not clean and worker.alive and not worker.stopped:
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
        if self._sessions > 0 or self._parked:
            return True
        return any(w.pending for w in (self._writer, *self._readers))

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
