"""Write transactions on the event loop's thread, on the writer's own connection: no hop.

A hand-off to a thread and back costs ~150 us of CPU; a one-row write transaction costs SQLite
~12 us. So a transaction whose statements are tiny runs on the loop thread, on the writer
thread's connection, lent while that thread is idle (``Worker.take``); jobs submitted meanwhile
wait in the worker, in order, and are queued when the loop gives the connection back.

Who runs a write session's statements::

    BEGIN deferred ──first statement: writer idle,  ──► on the loop: BEGIN IMMEDIATE (no busy
         │           budget open, not known slow        wait) + the statement, 0.5 ms of CPU
         │                                              and its own timeout=, if any
         │                                                   │
         └──writer busy, lock held elsewhere, a slow   ◄─────┤ a later write, a later statement
            or aborted first statement, a cursor,            │ with timeout=, one not yet seen
            execute_many: BEGIN rides on the thread's        │ cheap or aborted on the loop, a
            first job ──► on the thread                      │ cursor, execute_many, the budget
                                                             │ spent 16 turns
                                                             │
                                                             ├─a later read seen cheap: on the
                                                             │ loop, 0.5 ms of CPU, read-only
                                                             │
                                                             └─COMMIT / ROLLBACK / release──►
                                                               given back to the thread

Rules, those of inline reads: the loop's per-iteration budget is shared with them; the first
statement may use 0.5 ms of CPU, as an inline read, and an abort (which rolls back the whole
transaction: its BEGIN and this statement only) sends both to the thread, nothing lost. SQLite
rolls back the whole transaction when it interrupts a write, so a later write is never run
where it could be aborted: it goes to the thread, which honours its ``timeout=``. A later read
may run on the loop (``query_only`` on while it runs, unless it starts with SELECT: a
``WITH ... INSERT`` is refused before it writes, and learned as a write); an interrupted read
keeps the transaction, so an abort hands the connection, mid-transaction, to the thread, which
runs the read again. Work SQLite cannot interrupt (``count(*)`` of a big table) makes a
statement a suspect when a run is long in wall time; its next run's CPU time on the loop
thread decides whether it goes to the thread. A statement sent to the thread comes back after
``CHEAP_RUNS`` cheap runs there. The loop never waits for a lock: ``busy_timeout`` is 0 while
the loop holds the connection, and a busy BEGIN goes to the thread, which waits.

Checkpoints never run on the loop: ``wal_autocheckpoint`` is 0 while the loop holds the
connection, and every ``CHECKPOINT_EVERY`` commits made on the loop the writer thread runs a
passive checkpoint (the transaction that finds it busy with it goes to the thread).
Only WAL files (and ``:memory:``) with ``synchronous`` OFF or NORMAL qualify: there a commit
neither waits for readers nor syncs the disk. Between transactions the connection stays lent
(no settings to change for the next one) until the first job submitted to the thread.
"""

from __future__ import annotations

import math
import sqlite3
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

from .._async.backend import NOT_NOW
from .._ops import EXECUTE, FETCH_ALL, FETCH_ONE, FETCH_VAL, Op
from .._sql import TXCONTROL, SqlInfo
from .common import (
    SQLiteTarget,
    is_interrupt,
    is_readonly_refusal,
    is_rollback,
    run_op,
    translate,
)
from .deadline import Watch
from .inline import CHEAP_CPU_S, CHEAP_RUNS, SLOW_CPU_S
from .worker import Worker

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BEGINS", "ENDS", "LATER", "LOOP_TURNS", "LoopWriter", "qualifies", "tx_role"]

INLINE_QUERY_S: Final = 0.0005  # a first statement running longer is aborted and handed off
LOOP_TURNS: Final = 16  # loop turns a statement waits for inline budget before a thread runs it
CHECKPOINT_EVERY: Final = 256  # commits on the loop between two passive checkpoints
_KINDS: Final = frozenset({EXECUTE, FETCH_ONE, FETCH_ALL, FETCH_VAL})
_MEMORY: Final = 4096  # statements remembered at once (forgotten beyond: tried again)


class _Later:
    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


LATER: Any = _Later()  # the loop iteration's inline budget is spent: try after a loop turn


BEGINS, ENDS, OTHER = 1, 2, 3  # what a control statement does to a transaction
_ROLES: dict[str, int] = {}  # control statement text -> BEGINS / ENDS / OTHER


def tx_role(sql: str) -> int:
    """BEGIN...: ``BEGINS``; COMMIT, END, ROLLBACK (not ROLLBACK TO): ``ENDS``; else ``OTHER``."""
    role = _ROLES.get(sql)
    if role is not None:
        return role
    words = sql.upper().replace(";", " ").split()
    head = words[0] if words else ""
    if head == "BEGIN":
        role = BEGINS
    elif head in ("COMMIT", "END") or (head == "ROLLBACK" and "TO" not in words):
        role = ENDS
    else:
        role = OTHER
    if len(_ROLES) >= 256:
        _ROLES.clear()
    _ROLES[sql] = role
    return role


def qualifies(target: SQLiteTarget) -> bool:
    """A commit on this file neither waits for readers nor syncs the disk."""
    journal = target.journal_mode.lower()
    return (target.memory or journal == "wal") and target.synchronous.lower() in {
        "off",
        "normal",
        "0",
        "1",
    }


class LoopWriter:
    """Lends the writer's connection to one write session at a time, on the loop thread."""

    __slots__ = (
        "__weakref__",
        "_budget",
        "_cheap",
        "_checkpoint",
        "_commits",
        "_memory",
        "_restore",
        "_selects",
        "_slow",
        "_suspect",
        "_watch",
        "_writes",
        "off",
        "owner",
        "transactions",
        "worker",
    )

    def __init__(
        self,
        worker: Worker,
        budget: Callable[[float], bool],
        checkpoint: Callable[[], None],
        memory: bool,
    ) -> None:
        self.worker = worker
        self._memory = memory  # the one ``:memory:`` database: no file, no other connection
        worker.reclaim = weakref.WeakMethod(self._give_back)
        self._checkpoint = checkpoint  # posts a passive checkpoint to a thread (a reader's)
        self.owner: Any = None  # the WorkerSession whose statements run on the loop now
        self.off = False  # the connection's own settings (on_connect) do not qualify
        self.transactions = 0  # transactions committed on the loop
        self._budget = budget  # opens or checks the loop iteration's inline budget
        self._cheap: set[SqlInfo] = set()  # ran cheaply here: may run later in a transaction
        self._slow: dict[SqlInfo, int] = {}  # kept on the thread: cheap threaded runs so far
        self._suspect: set[SqlInfo] = set()  # a long run: the next one's CPU time decides
        self._selects: set[SqlInfo] = set()  # reads that start with SELECT: cannot write
        self._writes: set[SqlInfo] = set()  # reads that wrote (WITH ... INSERT): on the thread
        self._watch = Watch(cpu_limit=SLOW_CPU_S)  # a first statement's CPU limit; Ctrl-C
        self._commits = 0
        self._restore: tuple[str, str] | None = None  # the thread's busy timeout, checkpoints

    # -- statements ---------------------------------------------------------------------------

    def run(
        self, session: Any, kind: Op, info: SqlInfo, params: Any, arg: Any, timeout: float | None
    ) -> Any:
        """Run one statement of ``session`` on the loop; ``NOT_NOW``: the thread must run it
        (call ``hand_off`` first); ``LATER``: let the loop turn, then ask again."""
        if kind not in _KINDS or (timeout is not None and timeout <= INLINE_QUERY_S):
            return NOT_NOW
        if self.owner is not session:
            if self.owner is not None or session.begin is None or info in self._slow or self.off:
                return NOT_NOW
            now = time.perf_counter()
            if not self._budget(now):
                return LATER
            conn = self._take()
            if conn is None:
                return NOT_NOW
            self.owner = session
            return self._first(session, conn, kind, info, params, arg, now, timeout)
        conn = self.worker.conn
        if not self.worker.on_loop or conn is None:  # the database is closing
            self.owner = None
            return NOT_NOW
        if info.kind == TXCONTROL:
            return self._control(session, conn, kind, info, params, arg)
        # A later statement: an abort must not lose the transaction, and its timeout= is the
        # thread's to honour (it may do far more work than when it was seen cheap).
        if timeout is not None or info.is_write or info not in self._cheap or info in self._writes:
            return NOT_NOW
        now = time.perf_counter()
        if not self._budget(now):
            return LATER
        return self._later(session, conn, kind, info, params, arg, now)

    def _first(
        self,
        session: Any,
        conn: sqlite3.Connection,
        kind: Op,
        info: SqlInfo,
        params: Any,
        arg: Any,
        now: float,
        timeout: float | None,
    ) -> Any:
        """BEGIN and the first statement, under the deadline; aborted, both go to the thread."""
        begin = session.begin
        try:
            conn.execute(begin)
        except sqlite3.Error:  # busy: the thread waits for the lock; anything else: it reports
            if conn.in_transaction:  # pragma: no cover - a failed BEGIN opens nothing
                _rollback(conn)
            self._give_back()
            return NOT_NOW
        session.begin = None
        watch = self._watch
        if timeout is not None:
            watch.deadline = now + timeout  # the caller's, as on the thread
        suspect = info in self._suspect
        cpu = time.thread_time() if suspect else 0.0
        watch.cpu_deadline = 0.0  # the progress handler starts this statement's CPU clock
        try:
            result = run_op(conn, kind, info, params, arg)
        except sqlite3.Error as exc:
            by_cpu = watch.cpu_deadline and time.thread_time() >= watch.cpu_deadline
            watch.cpu_deadline = watch.deadline = math.inf
            if watch.pending is None and is_interrupt(exc):
                # Too slow for the loop, or past the caller's timeout: SQLite rolled back the
                # transaction, which held only this statement. The thread runs BEGIN and it
                # again (with the whole timeout, as an inline read).
                _rollback(conn)
                session.begin = begin
                if by_cpu:
                    self._to_thread(info)
                self._give_back()
                return NOT_NOW
            session.in_transaction = conn.in_transaction
            if watch.pending is not None:  # Ctrl-C on the loop thread: KeyboardInterrupt, as is
                watch.settle(conn)
            raise translate(exc) from exc
        except Exception as exc:
            watch.cpu_deadline = watch.deadline = math.inf
            session.in_transaction = conn.in_transaction
            raise translate(exc) from exc
        watch.cpu_deadline = watch.deadline = math.inf
        session.in_transaction = conn.in_transaction
        if suspect:
            self._measured(info, time.thread_time() - cpu)
        elif time.perf_counter() - now <= INLINE_QUERY_S:
            self._remember(info)
        else:
            self._suspect_of(info)
        return result

    def _later(
        self,
        session: Any,
        conn: sqlite3.Connection,
        kind: Op,
        info: SqlInfo,
        params: Any,
        arg: Any,
        now: float,
    ) -> Any:
        """A read seen cheap, later in the transaction: read-only, under the CPU limit; an
        abort keeps the transaction (SQLite rolls back only for writes) and the thread runs
        the read again."""
        guard = info not in self._selects
        if guard:
            if info.sql.lstrip()[:6].upper() == "SELECT":  # no write can hide behind it
                _add(self._selects, info)
                guard = False
            else:
                conn.execute("PRAGMA query_only=1")
        watch = self._watch
        suspect = info in self._suspect
        cpu = time.thread_time() if suspect else 0.0
        watch.cpu_deadline = 0.0
        try:
            result = run_op(conn, kind, info, params, arg)
        except sqlite3.Error as exc:
            by_cpu = watch.cpu_deadline and time.thread_time() >= watch.cpu_deadline
            watch.cpu_deadline = math.inf
            if guard:
                _query_only_off(conn)
            session.in_transaction = conn.in_transaction
            if watch.pending is not None:
                watch.settle(conn)
            if conn.in_transaction and (
                (is_interrupt(exc) and by_cpu) or (guard and is_readonly_refusal(exc))
            ):
                if by_cpu:
                    self._to_thread(info)  # too costly for the loop, for now
                else:
                    _add(self._writes, info)  # a WITH ... INSERT: the thread runs it, always
                return NOT_NOW  # the transaction is intact: the thread runs it
            raise translate(exc) from exc
        except Exception as exc:
            watch.cpu_deadline = math.inf
            if guard:
                _query_only_off(conn)
            session.in_transaction = conn.in_transaction
            raise translate(exc) from exc
        watch.cpu_deadline = math.inf
        if guard:
            _query_only_off(conn)
        session.in_transaction = conn.in_transaction
        if suspect:
            self._measured(info, time.thread_time() - cpu)
        elif time.perf_counter() - now > INLINE_QUERY_S:
            self._suspect_of(info)
        return result

    def _control(
        self,
        session: Any,
        conn: sqlite3.Connection,
        kind: Op,
        info: SqlInfo,
        params: Any,
        arg: Any,
    ) -> Any:
        """SAVEPOINT, RELEASE, ROLLBACK, COMMIT: cheap; the end of the transaction gives the
        connection back."""
        commit = tx_role(info.sql) == ENDS and not is_rollback(info)
        identity = self.worker.identity
        if commit and identity is not None and identity.problem() is not None:
            return NOT_NOW  # the thread refuses the COMMIT, with the reason
        try:
            result = run_op(conn, kind, info, params, arg)
        except sqlite3.Error as exc:
            session.in_transaction = conn.in_transaction
            raise translate(exc) from exc
        session.in_transaction = conn.in_transaction
        if not conn.in_transaction:
            self._idle()
            if commit:
                self.transactions += 1
                self._commits += 1
                if self._commits >= CHECKPOINT_EVERY:
                    self._commits = 0
                    self._checkpoint()
        return result

    # -- the connection -----------------------------------------------------------------------

    def hand_off(self, session: Any) -> None:
        """``session``'s next statement runs on the thread: give the connection back to it."""
        if self.owner is session:
            self._give_back()

    def end(self, session: Any) -> bool:
        """``session`` is released while it holds the connection on the loop: roll back what it
        left open and give the connection back; False if the thread must still reset it."""
        if self.owner is not session:
            return True
        worker = self.worker
        conn = worker.conn
        clean = True
        if worker.on_loop and conn is not None and conn.in_transaction:
            clean = _rollback(conn)
        if clean and worker.on_loop and not worker._held:
            self._idle()
        else:
            self._give_back()
        return clean

    def _idle(self) -> None:
        """The transaction ended: keep the connection lent (the next one needs no settings
        changed) unless jobs wait for the thread; the first job submitted takes it back."""
        self.owner = None
        worker = self.worker
        if worker._held:
            self._give_back()
        else:
            worker.lent_idle = True

    def _take(self) -> sqlite3.Connection | None:
        worker = self.worker
        if worker.lent_idle:
            worker.lent_idle = False
            return worker.conn
        conn = worker.take()
        if conn is None:
            return None
        try:
            if self._restore is None:  # first time: what the thread uses (on_connect may set it)
                busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
                auto = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
                self._restore = (f"PRAGMA busy_timeout={busy}", f"PRAGMA wal_autocheckpoint={auto}")
                journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
                # A commit that would wait for readers (a rollback journal on a file) or sync
                # the disk must not run on the loop.
                if not (journal == "wal" or (self._memory and journal == "memory")) or sync > 1:
                    self.off = True
                    worker.give_back()
                    return None
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:  # pragma: no cover - the connection is broken: let the thread say
            worker.give_back()
            return None
        self._watch.arm(conn)
        return conn

    def _give_back(self) -> None:
        worker = self.worker
        self.owner = None
        conn = worker.conn
        if worker.on_loop and conn is not None:
            conn.set_progress_handler(None, 0)
            if self._restore is not None:
                for pragma in self._restore:
                    try:
                        conn.execute(pragma)
                    except sqlite3.Error:  # pragma: no cover - the connection is broken
                        pass
            worker.give_back()

    # -- what is learned about statements (per database) ----------------------------------------

    def _remember(self, info: SqlInfo) -> None:
        cheap = self._cheap
        if len(cheap) >= _MEMORY:
            cheap.clear()
        cheap.add(info)

    def _suspect_of(self, info: SqlInfo) -> None:
        """A run was long in wall time: uninterruptible work, or a preempted thread?"""
        _add(self._suspect, info)

    def _measured(self, info: SqlInfo, cpu_s: float) -> None:
        """A suspect's run on the loop used ``cpu_s`` of the loop thread's CPU."""
        self._suspect.discard(info)
        if cpu_s >= SLOW_CPU_S:
            self._to_thread(info)
        else:
            self._remember(info)

    def _to_thread(self, info: SqlInfo) -> None:
        self._cheap.discard(info)
        self._suspect.discard(info)
        slow = self._slow
        if len(slow) >= _MEMORY:
            slow.clear()
        slow[info] = 0

    def wants_probe(self, info: SqlInfo) -> bool:
        """Measure this statement's CPU time on the thread: it may earn a place on the loop."""
        return info not in self._cheap

    def threaded_run(self, info: SqlInfo, cpu_s: float) -> None:
        """The thread ran ``info`` in a transaction using ``cpu_s`` of its CPU."""
        slow = self._slow
        if info in slow:
            if cpu_s >= CHEAP_CPU_S:
                slow[info] = 0
            elif slow[info] + 1 >= CHEAP_RUNS:
                del slow[info]
                self._remember(info)
            else:
                slow[info] += 1
        elif cpu_s < CHEAP_CPU_S:
            self._remember(info)


def _add(known: set[SqlInfo], info: SqlInfo) -> None:
    if len(known) >= _MEMORY:
        known.clear()  # forgotten: learned again
    known.add(info)


def _query_only_off(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA query_only=0")
    except sqlite3.Error:  # pragma: no cover - a late interrupt: once more
        conn.execute("PRAGMA query_only=0")


def _rollback(conn: sqlite3.Connection) -> bool:
    """Roll back what is open; a late interrupt may abort a ROLLBACK, so it is retried."""
    for _ in range(3):
        if not conn.in_transaction:
            return True
        try:
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            continue
    return not conn.in_transaction
