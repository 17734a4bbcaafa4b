"""A thread that owns one sqlite3 connection and runs jobs for the event loop.

The loop puts jobs on the worker's queue; the thread drains everything queued, runs it, and wakes
the loop once per batch (not once per job) to deliver the results. On the writer, consecutive
autocommit statements are committed together (group commit): one BEGIN IMMEDIATE ... COMMIT,
and no caller is answered before its write is committed. A failing statement fails only its
caller: SQLite's statement journal backs out that statement alone (the ABORT resolution) and
keeps the transaction, and ``execute_many`` gets an explicit savepoint. If SQLite rolls the
whole group back (an interrupted write, ``OR ROLLBACK``, a full disk), the statements that had
succeeded are run again, so nobody is told "committed" for a write that was lost.

A job's life::

    queued ──► running ──► done ──► delivered (future resolved on the loop)
      │           │
      └─cancel──► skipped (delivered without running)
                  └─cancel──► interrupted (sqlite3_interrupt; QueryTimeout or cancelled)

Streaming-cursor jobs (open, fetch) are interrupted like statements; only opening, stopping,
resets and cursor closes run to the end. A statement waiting for another connection's lock
waits in slices (``wait_out_busy``), so a timeout, a cancellation or a close that ran out of
time ends the wait too. The writer refuses writes once its file was deleted or replaced.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from enum import Enum
from queue import SimpleQueue
from typing import Any, Final

from .._errors import Error, InterfaceError, QueryTimeout
from .._hooks import run_hook_from_thread
from .._ops import EXECUTE_MANY, Op
from .._sql import DML, READ, TXCONTROL, SqlInfo
from .._stats import Stats
from .common import (
    FileIdentity,
    SQLiteTarget,
    fetch_batch,
    file_identity,
    is_busy,
    is_readonly_refusal,
    is_rollback,
    open_connection,
    open_cursor,
    run_op,
    translate,
    wait_out_busy,
)

__all__ = [
    "CHECKPOINT",
    "CURSOR_CLOSE",
    "CURSOR_FETCH",
    "CURSOR_OPEN",
    "OPEN",
    "RESET",
    "STOP",
    "Control",
    "Job",
    "Worker",
]


class Control(Enum):
    """Jobs that are not a statement's ``Op``: the connection's and cursors' life."""

    OPEN = "open"
    STOP = "stop"
    RESET = "reset"  # a session ends: roll back whatever it left open
    CURSOR_OPEN = "cursor_open"
    CURSOR_FETCH = "cursor_fetch"
    CURSOR_CLOSE = "cursor_close"
    CHECKPOINT = "checkpoint"  # a passive WAL checkpoint, for commits on the loop (loop_writer)


OPEN: Final = Control.OPEN
STOP: Final = Control.STOP
RESET: Final = Control.RESET
CURSOR_OPEN: Final = Control.CURSOR_OPEN
CURSOR_FETCH: Final = Control.CURSOR_FETCH
CURSOR_CLOSE: Final = Control.CURSOR_CLOSE
CHECKPOINT: Final = Control.CHECKPOINT

WORKER_NICE: Final = 10  # worker threads run this much below the loop thread (Linux)


_GROUPABLE = frozenset({READ, DML})


class Job:
    """One unit of work for a worker thread."""

    __slots__ = (
        "arg",
        "begin",
        "cancelled",
        "cpu",
        "error",
        "future",
        "info",
        "kind",
        "params",
        "probe",
        "reroute",
        "result",
        "session",
        "started",
        "timed_out",
        "waited",
    )

    def __init__(
        self, kind: Op | Control, info: SqlInfo | None, params: Any, arg: Any, session: Any = None
    ) -> None:
        self.kind = kind
        self.info = info
        self.params = params
        self.arg = arg
        self.session = session  # the WorkerSession for session jobs, None for autocommit
        self.begin: str | None = None  # a session's deferred BEGIN, run just before this job
        self.future: asyncio.Future[Any] | None = None
        self.result: Any = None
        self.error: Error | None = None
        self.cancelled = False
        self.timed_out = False
        self.started = False
        self.reroute = False  # a reader refused a write (or did once): it goes to the writer
        self.probe = False  # measure the thread CPU time the job takes (into ``cpu``)
        self.cpu = 0.0
        self.waited = 0.0  # seconds deferred behind a session's transaction (acquire wait);
        # negative (minus the start time) while still deferred


def _waited(deferred: list[Job]) -> list[Job]:
    """Turn each deferred job's (negated) start time into the seconds it waited for the writer."""
    now = time.perf_counter()
    for job in deferred:
        job.waited += now
    return deferred


def _clone(error: Error) -> Error:
    """A fresh copy of ``error`` for one more caller (exceptions carry tracebacks)."""
    copy = type(error)(str(error), sqlstate=error.sqlstate, constraint=error.constraint)
    copy.__cause__ = error.__cause__
    return copy


class Worker:
    """One thread, one connection, a queue in and a batched outbox back to the loop."""

    def __init__(
        self,
        target: SQLiteTarget,
        loop: asyncio.AbstractEventLoop,
        stats: Stats,
        *,
        writer: bool,
        name: str,
    ) -> None:
        self.target = target
        self.writer = writer
        self.name = name
        self.conn: sqlite3.Connection | None = None
        self.pending = 0  # jobs submitted and not yet delivered (loop side only)
        self._loop = loop
        self._stats = stats
        self._queue: SimpleQueue[Job] = SimpleQueue()
        self._outbox: deque[Job] = deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._current: Job | None = None
        self._deferred: list[Job] = []
        self._stopped = False
        self._abandon = False  # close() ran out of time: fail what has not started
        self.identity: FileIdentity | None = None  # the writer's file, to notice it replaced
        # The loop thread runs statements on ``conn`` itself (loop_writer.py): jobs submitted
        # meanwhile are held here, in order, and queued when it gives the connection back.
        self.on_loop = False
        self.lent_idle = False  # lent, but between transactions: a job takes it back at once
        # The lender's "take it back now" (it restores its settings): a weak reference, so
        # the workers (held by the backend's finalizer) never keep the backend alive.
        self.reclaim: weakref.WeakMethod[Any] | None = None
        self._held: list[Job] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    # -- loop side ----------------------------------------------------------------------------

    def start(self) -> asyncio.Future[Any]:
        self._thread.start()
        return self.submit(Job(OPEN, None, None, None))

    def submit(self, job: Job) -> asyncio.Future[Any]:
        if self._stopped:
            raise InterfaceError("the database is closed")
        future = self._loop.create_future()
        job.future = future
        self.pending += 1
        if self.on_loop:
            self._hold(job)
        else:
            self._queue.put(job)
        return future

    def post(self, job: Job) -> None:
        """Submit without anyone waiting for the result (resets, cursor closes, stop)."""
        self.pending += 1
        if self.on_loop:
            self._hold(job)
        else:
            self._queue.put(job)

    def _hold(self, job: Job) -> None:
        if self.lent_idle and self.reclaim is not None:
            reclaim = self.reclaim()
            if reclaim is not None:
                reclaim()  # no transaction runs on the loop: the thread takes it back now
            else:  # pragma: no cover - the lender is gone: give it back as it is
                self.give_back()
        if self.on_loop:
            job.waited -= time.perf_counter()  # waits for a transaction: an acquire wait
            self._held.append(job)
        else:
            self._queue.put(job)

    def take(self) -> sqlite3.Connection | None:
        """Lend the connection to the loop thread, if the thread has nothing to do with it.

        ``pending`` counts every job submitted and not yet delivered (deferred ones too): at
        zero the thread is idle or about to wait on its queue, and holds no statement open.
        """
        if self.pending or self.on_loop or self._stopped or self.conn is None:
            return None
        self.on_loop = True
        return self.conn

    def give_back(self) -> None:
        """The loop is done with the connection: queue, in order, what was held meanwhile."""
        self.on_loop = False
        self.lent_idle = False
        held, self._held = self._held, []
        if held:
            for job in _waited(held):
                self._queue.put(job)

    async def call(self, job: Job, timeout: float | None) -> Any:
        """Submit ``job`` and wait for it; cancellation or timeout cancels it in the thread."""
        future = self.submit(job)
        if timeout is None:
            try:
                return await future
            except asyncio.CancelledError:
                self.cancel(job)
                raise
        handle = self._loop.call_later(timeout, self._expire, job)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        finally:
            handle.cancel()

    def cancel(self, job: Job) -> None:
        """Drop ``job`` if still queued; interrupt it if running (not transaction control)."""
        with self._lock:
            job.cancelled = True
            if self._current is job and self.conn is not None and not _is_control(job):
                self.conn.interrupt()

    def _expire(self, job: Job) -> None:
        future = job.future
        if future is None or future.done():
            return
        job.timed_out = True
        with self._lock:
            if _is_control(job):
                return
            job.cancelled = True
            if self._current is job:
                if self.conn is not None:
                    self.conn.interrupt()
                return
            started = job.started
        if not started:
            future.set_exception(
                QueryTimeout("the statement timed out while waiting for a connection's thread")
            )

    def _deliver(self) -> None:
        self._wake_pending = False
        outbox = self._outbox
        while outbox:
            job = outbox.popleft()
            self.pending -= 1
            future = job.future
            if future is None or future.done():
                continue
            if job.error is None:
                future.set_result(job.result)
            else:
                future.set_exception(job.error)

    # -- thread side --------------------------------------------------------------------------

    def _main(self) -> None:
        _lower_priority()
        queue = self._queue
        stop = False
        while not stop:
            batch = [queue.get()]
            while not queue.empty():
                batch.append(queue.get())
            stop = self._process(batch)
            self._wake()

    def _wake(self) -> None:
        if self._outbox and not self._wake_pending:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._outbox.clear()

    def _process(self, batch: list[Job]) -> bool:
        if self.identity is not None:
            problem = self.identity.problem()  # one stat per batch, on the writer only
            if problem is not None:
                batch = self._refuse_writes(batch, problem)
        group: list[Job] = []
        for index, job in enumerate(batch):
            kind = job.kind
            if kind is STOP:
                self._commit_group(group)
                self._shutdown(batch[index + 1 :])
                return True
            if not self.writer or job.session is not None or type(kind) is Control:
                if group:
                    self._commit_group(group)
                    group = []
                self._run_one(job)
                if self._deferred and not self._in_transaction():
                    deferred, self._deferred = self._deferred, []
                    self._process(_waited(deferred))  # writes that waited go first
            elif self._in_transaction():
                job.waited -= time.perf_counter()  # negative while deferred: minus its start
                self._deferred.append(job)  # a session's transaction is open: wait for its end
            elif job.info is not None and job.info.kind in _GROUPABLE:
                group.append(job)  # reads and writes can share a group commit; DDL runs alone
            else:
                if group:
                    self._commit_group(group)
                    group = []
                self._run_one(job)
        self._commit_group(group)
        while self._deferred and not self._in_transaction():
            deferred, self._deferred = self._deferred, []
            self._process(_waited(deferred))
        return False

    def _refuse_writes(self, batch: list[Job], problem: str) -> list[Job]:
        assert self.identity is not None
        rest = []
        for job in batch:
            info = job.info
            if (
                type(job.kind) is Op
                and info is not None
                and (info.is_write or job.reroute)  # reroute: a write learned behind a read
                and not is_rollback(info)
            ):
                job.error = self.identity.refusal(problem)
                self._outbox.append(job)
            else:
                rest.append(job)
        return rest

    def _give_up(self, job: Job) -> Error | None:
        """Why a statement waiting for another connection's lock stops waiting, if it must."""
        if self._abandon:
            return InterfaceError("the database was closed while this statement waited for a lock")
        if job.cancelled:
            text = "ran past its timeout" if job.timed_out else "was cancelled"
            return QueryTimeout(
                f"the statement {text} while it waited for another connection's lock",
                sqlstate="57014",
            )
        return None

    def _in_transaction(self) -> bool:
        conn = self.conn
        return conn is not None and conn.in_transaction

    def _run_one(self, job: Job) -> None:
        with self._lock:
            if job.cancelled:
                self._outbox.append(job)
                return
            if self._abandon and not _is_control(job):
                job.error = InterfaceError("the database was closed before this statement ran")
                self._outbox.append(job)
                return
            self._current = job
            job.started = True
        start = time.thread_time() if job.probe else 0.0
        try:
            job.result = self._do(job)
            if job.probe:
                job.cpu = time.thread_time() - start
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if not self.writer and job.session is None and is_readonly_refusal(exc):
                job.reroute = True
            job.error = translate(exc, timed_out=job.timed_out)
            if job.error is not exc:
                job.error.__cause__ = exc
        finally:
            with self._lock:
                self._current = None
        session = job.session
        if session is not None and self.conn is not None:
            session.in_transaction = self.conn.in_transaction
        self._outbox.append(job)

    def _do(self, job: Job) -> Any:
        kind = job.kind
        conn = self.conn
        if job.begin is not None:
            assert conn is not None
            self._begin(conn, job)
        if type(kind) is Op:
            assert conn is not None and job.info is not None
            if job.session is not None and not conn.in_transaction and is_rollback(job.info):
                return None  # the BEGIN it would undo never ran (its job was cancelled first)
            if conn.in_transaction:
                return run_op(conn, kind, job.info, job.params, job.arg)
            try:
                return run_op(conn, kind, job.info, job.params, job.arg)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                args = (conn, kind, job.info, job.params, job.arg)
                return wait_out_busy(
                    exc, conn, self.target, run_op, args, lambda: self._give_up(job)
                )
        if kind is OPEN:
            conn = open_connection(self.target, readonly=not self.writer)
            run_hook_from_thread(self.target.on_connect, conn, self._loop)
            self.conn = conn
            if self.writer:
                self.identity = file_identity(self.target)
            return None
        assert conn is not None
        if kind is RESET:
            self._reset(conn, job.session)
            return None
        if kind is CURSOR_OPEN:
            assert job.info is not None
            try:
                cursor = open_cursor(conn, job.info, job.params)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                again = (conn, job.info, job.params)
                give_up = lambda: self._give_up(job)  # noqa: E731
                cursor = wait_out_busy(exc, conn, self.target, open_cursor, again, give_up)
            if job.session is not None:
                job.session.cursors.add(cursor)
            return cursor
        if kind is CHECKPOINT:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return None
        if kind is CURSOR_FETCH:
            cursor, size = job.arg
            return fetch_batch(cursor, size)
        if kind is CURSOR_CLOSE:
            if job.session is not None:
                job.session.cursors.discard(job.arg)
            job.arg.close()
            return None
        raise AssertionError(f"unknown job kind {kind}")

    def _begin(self, conn: sqlite3.Connection, job: Job) -> None:
        """A session's first job carries its BEGIN (one hop, not two); waits out a busy lock."""
        begin, job.begin = job.begin, None
        if begin is None or conn.in_transaction:  # pragma: no cover - a session never begins twice
            return
        try:
            conn.execute(begin)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            wait_out_busy(
                exc, conn, self.target, conn.execute, (begin,), lambda: self._give_up(job)
            )

    @staticmethod
    def _reset(conn: sqlite3.Connection, session: Any) -> None:
        """End a session: close cursors it left open, then roll back what it left open.

        A cursor left open keeps a statement active, and while one is active a late
        ``sqlite3_interrupt`` (aimed at a statement that had just finished) stays armed and
        would abort the ROLLBACK: close them first, and retry the ROLLBACK if it was hit.
        """
        if session is not None:
            for cursor in list(session.cursors):
                try:
                    cursor.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            session.cursors.clear()
        for _ in range(3):
            if not conn.in_transaction:
                return
            try:
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                continue
        if conn.in_transaction:  # pragma: no cover - the connection is unusable
            raise sqlite3.OperationalError("could not roll back a session's transaction")

    def _commit_group(self, group: list[Job]) -> None:
        live = [job for job in group if not job.cancelled]
        if len(live) <= 1 or self._abandon:
            for job in group:
                self._run_one(job)
            return
        conn = self.conn
        assert conn is not None
        stats = self._stats
        stats.group_commits += 1
        stats.grouped_writes += len(live)
        pending = live
        while pending:
            pending = self._try_group(conn, pending)
        for job in group:
            self._outbox.append(job)

    def _try_group(self, conn: sqlite3.Connection, jobs: list[Job]) -> list[Job]:
        """Run ``jobs`` in one transaction; returns the jobs to run again if it was lost."""
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                wait_out_busy(
                    exc, conn, self.target, conn.execute, ("BEGIN IMMEDIATE",),
                    lambda: self._group_give_up(jobs),
                )  # fmt: skip
        except (sqlite3.Error, Error) as exc:
            self._fail_all(jobs, exc)
            return []
        ran: list[Job] = []
        for index, job in enumerate(jobs):
            with self._lock:
                if job.cancelled:
                    continue
                self._current = job
                job.started = True
            # One statement needs no savepoint: SQLite backs out a failing statement by itself
            # (ABORT) and keeps the transaction; when it drops the whole transaction instead,
            # the group is replayed below. execute_many runs many statements: it gets one.
            write = job.kind is EXECUTE_MANY
            try:
                if write:
                    conn.execute("SAVEPOINT awaitdb_group")
                job.result = self._do(job)
                if write:
                    conn.execute("RELEASE awaitdb_group")
            except BaseException as exc:  # noqa: BLE001
                job.error = translate(exc, timed_out=job.timed_out)
                if job.error is not exc:
                    job.error.__cause__ = exc
                if not conn.in_transaction:
                    # SQLite rolled the whole group back: rerun what had succeeded.
                    redo = [j for j in ran if j.error is None] + jobs[index + 1 :]
                    for again in redo:
                        again.result = None
                        again.started = False
                    return redo
                if write:
                    try:
                        conn.execute("ROLLBACK TO awaitdb_group")
                        conn.execute("RELEASE awaitdb_group")
                    except sqlite3.Error as fatal:
                        self._abort(conn, [j for j in jobs if j.error is None], fatal)
                        return []
            finally:
                with self._lock:
                    self._current = None
            ran.append(job)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort(conn, [j for j in ran if j.error is None], exc)
        return []

    def _abort(self, conn: sqlite3.Connection, jobs: list[Job], exc: BaseException) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        self._fail_all(jobs, exc)

    def _group_give_up(self, jobs: list[Job]) -> Error | None:
        if self._abandon or all(job.cancelled for job in jobs):
            return self._give_up(jobs[0])
        return None

    def _fail_all(self, jobs: list[Job], exc: BaseException) -> None:
        error = translate(exc)
        if error is not exc:
            error.__cause__ = exc
        for job in jobs:
            job.result = None
            job.error = _clone(error)

    def _shutdown(self, rest: list[Job]) -> None:
        closed = InterfaceError("the database was closed before this statement ran")
        for job in self._deferred + rest:
            job.error = _clone(closed)
            self._outbox.append(job)
        self._deferred = []
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - close of a broken connection
                pass
        self._outbox.append(Job(STOP, None, None, None))  # balances ``post``'s pending count

    def stop(self) -> None:
        """Ask the thread to finish what it is running, fail the rest, close and exit."""
        if not self._stopped:
            self._stopped = True
            if self.on_loop:  # closing: the loop's turn is over whatever it was doing
                self.give_back()
            self.post(Job(STOP, None, None, None))

    def interrupt(self) -> None:
        """Interrupt what runs now and fail what has not started (a close that ran out of time)."""
        with self._lock:
            self._abandon = True
            if self.conn is not None and self._current is not None:
                self.conn.interrupt()

    def join(self, timeout: float | None) -> None:
        self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def _lower_priority() -> None:
    """Let the event loop's thread win the CPU over this worker (Linux: nice is per thread).

    On a machine with few cores, SQLite work running in parallel would otherwise delay the loop
    by whole scheduler time slices; a lower priority keeps loop lag near its idle floor.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        except OSError:  # pragma: no cover - not permitted here: keep the default priority
            pass


_UNINTERRUPTIBLE = frozenset({OPEN, STOP, RESET, CURSOR_CLOSE, CHECKPOINT})


def _is_control(job: Job) -> bool:
    """Jobs that run to the end: cancelling them would leave the connection's state unknown."""
    return job.kind in _UNINTERRUPTIBLE or (job.info is not None and job.info.kind == TXCONTROL)
