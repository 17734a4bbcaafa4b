"""The sync SQLite backend: sqlite3 called directly in the caller's thread, no event loop.

Reads outside a block run on a reader connection owned by the calling thread (opened on first
use, at most ``MAX_THREAD_READERS`` threads at once; beyond that, pooled readers). The thread
holds it through a ``_ThreadReader`` in a thread-local: when the thread ends, the holder is
finalised and the reader closed, so short-lived threads leave no descriptor and no used-up slot
behind (``close()`` closes the readers of threads still alive, from its own thread); writes and
sessions
take the single writer through the FIFO pool, so a thread's transaction excludes other writers
exactly as in the async face. Every connection keeps a progress handler (``deadline.Watch``):
it enforces ``timeout=`` and lets Ctrl-C stop a statement mid-way, as ``KeyboardInterrupt``.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from .._config import Config
from .._errors import Error, InterfaceError, QueryTimeout
from .._hooks import run_hook_sync
from .._ops import Column, Op
from .._record import Record
from .._sql import SqlInfo
from .._stats import Stats
from .._sync.pool import SyncPool, acquire_within
from .common import (
    FileIdentity,
    SQLiteTarget,
    combined_gauges,
    fetch_batch,
    file_identity,
    is_busy,
    is_interrupt,
    is_readonly_refusal,
    open_connection,
    open_cursor,
    run_op,
    translate,
    wait_out_busy,
)
from .deadline import Watch

__all__ = ["SyncSQLiteBackend"]

MAX_THREAD_READERS = 64
CLOSE_WAIT_S = 5.0  # close() waits this long for a thread to leave an interrupted statement
logger = logging.getLogger("awaitdb")


class _Conn:
    """A connection with the lock that serializes its use and its progress handler."""

    __slots__ = ("__weakref__", "closing", "conn", "identity", "lock", "target", "watch")

    def __init__(
        self,
        conn: sqlite3.Connection,
        target: SQLiteTarget,
        closing: threading.Event,
        identity: FileIdentity | None = None,
    ) -> None:
        self.conn = conn
        self.target = target
        self.closing = closing  # set by close(): a wait for another's lock stops
        self.identity = identity  # the writer's file, to refuse writes once it is replaced
        self.lock = threading.Lock()
        self.watch = Watch()  # the progress handler: the deadline, Ctrl-C mid-statement
        self.watch.arm(conn)

    def run(self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None) -> Any:
        with self.lock:
            if self.identity is not None and info.is_write:
                self.identity.check(info)
            if timeout is not None:
                return self._locked(run_op, (self.conn, kind, info, params, arg), timeout)
            # ``_locked`` without a deadline, flat: the sync face's every statement comes here.
            try:
                try:
                    return run_op(self.conn, kind, info, params, arg)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc):
                        raise self.error(exc, False) from exc
                    busy = exc
                except Exception as exc:  # KeyboardInterrupt, SystemExit: untouched
                    raise translate(exc) from exc
                return self.wait_out(busy, run_op, (self.conn, kind, info, params, arg), False)
            finally:
                if self.watch.pending is not None:
                    self.watch.settle(self.conn)  # Ctrl-C in the progress handler: raised as is

    def wait_out(
        self, busy: sqlite3.Error, fn: Callable[..., Any], args: tuple[Any, ...], timed: bool
    ) -> Any:
        """``fn(*args)`` again while another connection holds the lock (``wait_out_busy``)."""

        def give_up() -> Error | None:
            if self.closing.is_set():
                return InterfaceError(
                    "the database was closed while this statement waited for a lock"
                )
            if timed and time.perf_counter() > self.watch.deadline:
                return QueryTimeout(
                    "the statement ran past its timeout while it waited for another "
                    "connection's lock",
                    sqlstate="57014",
                )
            return None

        try:
            return wait_out_busy(busy, self.conn, self.target, fn, args, give_up)
        except Exception as exc:  # KeyboardInterrupt, SystemExit: untouched
            raise translate(exc, timed_out=timed) from exc

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
        """``fn(*args)`` on this connection under its lock, cancelled past ``timeout``."""
        with self.lock:
            return self._locked(fn, args, timeout)

    def _locked(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
        timed = timeout is not None
        if timeout is not None:
            self.watch.deadline = time.perf_counter() + timeout
        try:
            try:
                return fn(*args)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise self.error(exc, timed) from exc
                busy = exc
            except Exception as exc:  # KeyboardInterrupt, SystemExit: untouched
                raise translate(exc, timed_out=timed) from exc
            return self.wait_out(busy, fn, args, timed)
        finally:
            watch = self.watch
            if timed:
                watch.deadline = math.inf
            if watch.pending is not None:
                watch.settle(self.conn)  # Ctrl-C in the progress handler: raised as is

    def error(self, exc: sqlite3.Error, timed: bool) -> Error:
        """``translate(exc)``, except that a statement ``close()`` interrupted says so."""
        error = translate(exc, timed_out=timed)
        if self.closing.is_set() and is_interrupt(exc):
            return InterfaceError("the database was closed while this statement ran")
        return error

    def close(self) -> None:
        """Stop a running statement, wait (bounded) for its thread to let go, then close."""
        try:
            self.conn.interrupt()
        except sqlite3.Error:  # pragma: no cover
            pass
        # Closing a connection another thread is stepping corrupts that step (MemoryError):
        # the interrupted statement returns at its next VM step and releases the lock.
        if not self.lock.acquire(timeout=CLOSE_WAIT_S):  # pragma: no cover - a stuck callback
            logger.warning("a SQLite connection stayed busy past close(); left to the collector")
            return
        try:
            self.conn.close()
        except sqlite3.Error:  # pragma: no cover
            pass
        finally:
            self.lock.release()


class _ThreadReaders:
    """The thread readers' bookkeeping, apart from the backend so that no thread keeps it alive.

    ``retire`` runs when a thread's holder is finalised (usually in the ending thread itself).
    """

    __slots__ = ("all", "count", "guard")

    def __init__(self, guard: threading.Lock, conns: list[_Conn]) -> None:
        self.guard = guard
        self.all = conns  # the backend's list of every open connection
        self.count = 0

    def retire(self, conn: _Conn) -> None:
        with self.guard:
            self.count -= 1
            try:
                self.all.remove(conn)
            except ValueError:  # pragma: no cover - already gone
                pass
        conn.close()


class _ThreadReader:
    """One thread's reader, held in a thread-local: finalised (and the reader closed) when the
    thread ends or the backend goes away."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: _Conn, readers: _ThreadReaders) -> None:
        self.conn = conn
        weakref.finalize(self, readers.retire, conn)


class DirectSession:
    """A connection lent to one transaction, pinned block or cursor."""

    __slots__ = ("_conn", "readonly")

    def __init__(self, conn: _Conn, readonly: bool) -> None:
        self._conn = conn
        self.readonly = readonly

    @property
    def in_transaction(self) -> bool:
        return self._conn.conn.in_transaction

    def run(self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None) -> Any:
        return self._conn.run(kind, info, params, arg, timeout)

    def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> Any:
        return self._conn.call(open_cursor, (self._conn.conn, info, params), timeout)

    def fetch_cursor(self, cursor: Any, size: int, timeout: float | None = None) -> list[Record]:
        rows: list[Record] = self._conn.call(fetch_batch, (cursor, size), timeout)
        return rows

    def close_cursor(self, cursor: Any) -> None:
        with self._conn.lock:
            self._close(cursor)

    @staticmethod
    def _close(cursor: Any) -> None:
        try:
            cursor.close()
        except sqlite3.Error:  # pragma: no cover
            pass


class SyncSQLiteBackend:
    """Implements the sync ``SyncBackend`` protocol with plain sqlite3 connections."""

    name = "sqlite"

    def __init__(self, config: Config) -> None:
        self.stats = Stats(config.slow_query_ms)
        self._config = config
        self._target = SQLiteTarget(config)
        self._closing = False
        self._closed = threading.Event()  # shared with every _Conn: stops waits for locks
        self._all: list[_Conn] = []
        self._local = threading.local()
        self._sessions = 0
        self._guard = threading.Lock()
        self._writes: set[SqlInfo] = set()  # reads a reader refused (WITH ... INSERT): writer
        self._readers = _ThreadReaders(self._guard, self._all)
        try:
            writer = self._open(readonly=False)
            readers = [self._open(readonly=True) for _ in range(self._target.readers)]
        except BaseException:
            _close_all(self._all)  # a hook failing on a later connection: close the earlier
            raise
        self._writer = writer
        timeout = config.acquire_timeout
        self._writer_pool: SyncPool[_Conn] = SyncPool(
            "sqlite-writer",
            stats=self.stats,
            max_size=1,
            acquire_timeout=timeout,
            max_waiting=config.max_waiting,
            items=[writer],
        )
        self._reader_pool: SyncPool[_Conn] | None = None
        if readers:
            self._reader_pool = SyncPool(
                "sqlite-readers",
                stats=self.stats,
                max_size=len(readers),
                acquire_timeout=timeout,
                max_waiting=config.max_waiting,
                items=readers,
            )
        weakref.finalize(self, _close_all, self._all)

    @classmethod
    def open(cls, config: Config) -> SyncSQLiteBackend:
        return cls(config)

    def _open(self, *, readonly: bool) -> _Conn:
        raw = open_connection(self._target, readonly=readonly)
        run_hook_sync(self._target.on_connect, raw)
        identity = None if readonly else file_identity(self._target)
        conn = _Conn(raw, self._target, self._closed, identity)
        with self._guard:
            self._all.append(conn)
        return conn

    def _thread_reader(self) -> _Conn | None:
        held: _ThreadReader | None = getattr(self._local, "reader", None)
        if held is not None:
            return held.conn
        if not self._target.readers:
            return None
        readers = self._readers
        with self._guard:
            if readers.count >= MAX_THREAD_READERS:
                return None
            readers.count += 1
        try:
            conn = self._open(readonly=True)
        except BaseException:
            with self._guard:
                readers.count -= 1
            raise
        self._local.reader = _ThreadReader(conn, readers)
        return conn

    # -- autocommit ---------------------------------------------------------------------------

    def run(self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None) -> Any:
        if not info.is_write and info not in self._writes:
            held = getattr(self._local, "reader", None)
            reader = held.conn if held is not None else self._thread_reader()
            if reader is None and self._reader_pool is not None:
                pooled = self._reader_pool.acquire()
                try:
                    return pooled.run(kind, info, params, arg, timeout)
                finally:
                    self._reader_pool.release(pooled)
            if reader is not None:
                try:
                    # Under its lock even untimed: close() from another thread waits for it.
                    return reader.run(kind, info, params, arg, timeout)
                except InterfaceError:
                    raise
                except Exception as exc:
                    if not is_readonly_refusal(exc.__cause__ or exc):
                        raise
                    _learn_write(self._writes, info)  # this database's knowledge only
        pool = self._writer_pool
        if timeout is None:
            writer = pool.acquire()
        else:  # the call's timeout= bounds the wait too, as on the async face
            writer, timeout = acquire_within(pool, timeout)
        try:
            if writer.identity is not None and not info.is_write and info in self._writes:
                writer.identity.check(info)  # a learned write: refused once the file is replaced
            return writer.run(kind, info, params, arg, timeout)
        finally:
            if writer.conn.in_transaction:  # pragma: no cover - autocommit leaves none open
                writer.conn.execute("ROLLBACK")
            self._writer_pool.release(writer)

    run_now = run  # the sync face always answers at once

    # -- sessions -----------------------------------------------------------------------------

    def writes(self, info: SqlInfo, refusal: BaseException | None = None) -> bool:
        if refusal is not None and is_readonly_refusal(refusal.__cause__ or refusal):
            _learn_write(self._writes, info)
            return True
        return info.is_write or info in self._writes

    def acquire(self, *, write: bool, timeout: float | None) -> DirectSession:
        if write or self._reader_pool is None:
            conn = self._writer_pool.acquire(timeout)
        else:
            conn = self._reader_pool.acquire(timeout)
        with self._guard:
            self._sessions += 1
        return DirectSession(conn, readonly=not write)

    def release(self, session: Any, *, discard: bool = False) -> None:
        assert isinstance(session, DirectSession)
        conn = session._conn
        with self._guard:
            self._sessions -= 1
        with conn.lock:
            try:
                if conn.conn.in_transaction:
                    conn.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if conn is self._writer:
            self._writer_pool.release(conn)
        else:
            assert self._reader_pool is not None
            self._reader_pool.release(conn)

    # -- state --------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, int]:
        return combined_gauges(self._writer_pool, self._reader_pool)

    def busy(self) -> bool:
        return self._sessions > 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._closed.set()  # statements waiting for another connection's lock stop waiting
        self._writer_pool.close()
        if self._reader_pool is not None:
            self._reader_pool.close()
        _close_all(self._all)


def _learn_write(writes: set[SqlInfo], info: SqlInfo) -> None:
    """Remember that ``info`` writes, for this database only (forgotten past 4,096 statements)."""
    if len(writes) >= 4096:
        writes.clear()
    writes.add(info)


def _close_all(conns: list[_Conn]) -> None:
    for conn in list(conns):  # a thread ending meanwhile removes its reader from the list
        conn.close()
