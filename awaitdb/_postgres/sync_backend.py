"""The sync PostgreSQL backend on psycopg 3, for the generated sync face.

Mirrors the asyncpg backend: autocommit statements are one round trip with no reset on release
unless the session state changed; ``:name`` becomes ``$n`` (psycopg's ``RawCursor`` speaks
PostgreSQL's native placeholders); statements are prepared after ``PREPARE_THRESHOLD``
executions (never with ``statement_cache_size=0``); ``timeout=`` cancels the statement on the
server from a timer; JSON values bind as untyped text so the server casts them to the column's
``json`` or ``jsonb``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.rows import tuple_row
from psycopg.types.array import ListDumper

from .._config import Config
from .._errors import (
    CannotConnect,
    ConnectionLost,
    DataError,
    Error,
    InterfaceError,
    TransactionAborted,
)
from .._hooks import run_hook_sync
from .._ops import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Column, Op, Params
from .._record import Record, cached_record_class, column_index
from .._sql import TXCONTROL, SqlArray, SqlInfo
from .._stats import Stats
from .._sync.pool import SyncPool, acquire_within
from .common import (
    RESET_QUERY,
    backoff,
    begin_sql,
    build_records,
    is_permanent,
    may_move_on,
    pool_options,
    unread_input,
)
from .dialect import DIALECT
from .errors import nul_in_text, too_deep, translate, unencodable

__all__ = ["SyncPostgresBackend"]

PREPARE_THRESHOLD = 0  # prepare on first use: the asyncpg face does the same
_CANNOT_ADAPT = re.compile(r"cannot adapt type '([^']+)'")


class _JsonDumper(Dumper):
    """dict and list as JSON text of unknown type: the server casts to json or jsonb."""

    oid = 0

    def dump(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _column_names(description: Any) -> tuple[str, ...]:
    return tuple(column.name for column in description)


class _Connection(psycopg.Connection[Any]):
    """A psycopg connection that remembers its statements' result shapes (Record classes)."""

    shapes: dict[str, tuple[Any, type[Record]]]


def _record_cls(conn: psycopg.Connection[Any], info: SqlInfo, description: Any) -> type[Record]:
    shapes: dict[str, tuple[Any, type[Record]]] = conn.shapes  # type: ignore[attr-defined]
    return cached_record_class(shapes, info.sql, description, _column_names)


def _translate(exc: BaseException, conn: psycopg.Connection[Any], info: SqlInfo | None,
               params: Any, *, sent: bool = True) -> Error:  # fmt: skip
    if isinstance(exc, RecursionError):
        return too_deep(info, params, decoding=sent)
    if isinstance(exc, UnicodeEncodeError):
        return unencodable(info, params, exc)
    if isinstance(exc, psycopg.DataError) and not getattr(exc, "sqlstate", None):
        if "NUL" in str(exc):  # refused by psycopg before sending
            return nul_in_text(info, params)
        return DataError(str(exc), sqlstate="22000")  # e.g. a date Python cannot hold
    if conn.broken or (
        isinstance(exc, psycopg.OperationalError) and not getattr(exc, "sqlstate", None)
    ):
        return ConnectionLost(f"the connection was lost: {exc}")
    match = _CANNOT_ADAPT.search(str(exc))
    if match and isinstance(params, Mapping):
        names = [k for k, v in params.items() if type(v).__name__ == match.group(1)]
        name = f":{names[0]}" if names else "a parameter"
        return InterfaceError(
            f"cannot bind {name}: values of type {match.group(1)} are not supported"
        )
    return translate(exc, info)


def _column(description: Any, row: tuple[Any, ...], column: int | str) -> Any:
    return row[column_index([col.name for col in description], column)]


def execute(conn: psycopg.Connection[Any], kind: Op, info: SqlInfo, params: Any, arg: Any,
            timeout: float | None) -> Any:  # fmt: skip
    """Run one statement on ``conn``, shaped by ``kind``; driver errors become awaitdb errors.

    ``params``/``arg`` are the seam's ``Params``/``Column``, left ``Any`` here: ``kind`` says
    which form they take (rows for EXECUTE_MANY), and narrowing would cost on the hot path."""
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, conn.cancel_safe)
        timer.daemon = True
        timer.start()
    sent = False
    try:
        cursor = conn.cursor()
        sql = info.text_for(DIALECT)
        if kind is EXECUTE_MANY:
            cursor.executemany(sql, [info.positional(p) for p in params])
            return len(params)
        args = info.positional(params) if info.order else None
        cursor.execute(sql, args)
        sent = True  # from here on, errors come from decoding the result
        if kind is FETCH_ONE:
            row = cursor.fetchone()
            return None if row is None else _record_cls(conn, info, cursor.description)(row)
        if kind is FETCH_ALL:
            rows = cursor.fetchall()
            if not rows:
                return []
            return build_records(_record_cls(conn, info, cursor.description), rows)
        if kind is EXECUTE:
            status = cursor.statusmessage
            if info.kind == TXCONTROL and status == "ROLLBACK" and not _is_rollback(info):
                raise TransactionAborted(
                    "the transaction had already failed: PostgreSQL rolled it back at COMMIT"
                )
            return max(cursor.rowcount, 0)
        row = cursor.fetchone()
        return None if row is None else _column(cursor.description, row, arg)
    except (psycopg.Error, OSError, UnicodeError, RecursionError) as exc:
        error = _translate(exc, conn, info, params, sent=sent)
        if timer is not None and error.sqlstate == "57014":
            error = type(error)("the statement ran past its timeout and was cancelled",
                                sqlstate="57014")  # fmt: skip
        raise error from exc
    finally:
        if timer is not None:
            timer.cancel()


def _is_rollback(info: SqlInfo) -> bool:
    return info.sql.lstrip().upper().startswith("ROLLBACK")


class PgSyncSession:
    """A psycopg connection lent to a transaction, pinned block or cursor."""

    __slots__ = ("_cursors", "_lock", "conn", "cursor_tx", "dirty", "readonly")

    def __init__(self, conn: psycopg.Connection[Any], readonly: bool) -> None:
        self.conn = conn
        self.readonly = readonly
        self.dirty = False
        self.cursor_tx = False
        self._lock = threading.Lock()
        self._cursors = 0

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def run(
        self, kind: Op, info: SqlInfo, params: Params, arg: Column, timeout: float | None
    ) -> Any:
        with self._lock:
            if info.changes_session:
                self.dirty = True
            return execute(self.conn, kind, info, params, arg, timeout)

    def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> Any:
        with self._lock:
            conn = self.conn
            try:
                if not self.in_transaction:  # server-side cursors live in a transaction
                    # never READ ONLY from a guess: ``SELECT f()`` may write
                    conn.execute(begin_sql(None, readonly=False))
                    self.cursor_tx = True
                if info.is_write:  # DECLARE takes no INSERT/UPDATE/DELETE: a client cursor
                    cursor = conn.cursor()  # (a write's rows are all made before the first)
                else:
                    self._cursors += 1
                    cursor = psycopg.RawServerCursor(conn, f"awaitdb_cursor_{self._cursors}")
                try:
                    with _cancel_after(conn, timeout):
                        cursor.execute(
                            info.text_for(DIALECT), info.positional(params) if info.order else None
                        )
                except BaseException:
                    _discard(cursor)
                    raise
                return cursor, info
            except (psycopg.Error, OSError) as exc:
                raise _translate(exc, conn, info, params) from exc

    def fetch_cursor(self, cursor: Any, size: int, timeout: float | None = None) -> list[Record]:
        handle, info = cursor
        with self._lock:
            try:
                with _cancel_after(self.conn, timeout):
                    rows = handle.fetchmany(size)
            except (psycopg.Error, OSError) as exc:
                _discard(handle)  # the stream ends here: Rows does not close it after an error
                raise _translate(exc, self.conn, info, None) from exc
            if not rows:
                return []
            return list(map(_record_cls(self.conn, info, handle.description), rows))

    def close_cursor(self, cursor: Any) -> None:
        handle, _ = cursor
        with self._lock:
            try:
                handle.close()
                if self.cursor_tx:
                    self.cursor_tx = False
                    self.conn.execute("COMMIT")
            except (psycopg.Error, OSError) as exc:
                raise _translate(exc, self.conn, None, None) from exc


@contextlib.contextmanager
def _cancel_after(conn: psycopg.Connection[Any], timeout: float | None) -> Iterator[None]:
    """Cancel the running statement on the server if it runs past ``timeout`` (57014)."""
    if timeout is None:
        yield
        return
    timer = threading.Timer(timeout, conn.cancel_safe)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _discard(cursor: Any) -> None:
    """Close a cursor whose statement failed (no CLOSE reaches an aborted transaction)."""
    try:
        cursor.close()
    except (psycopg.Error, OSError):
        pass


def _alive(conn: psycopg.Connection[Any]) -> bool:
    return not (conn.closed or conn.broken)


def _idle_alive(conn: psycopg.Connection[Any]) -> bool:
    """Checked on checkout: psycopg reads only when asked, so a session the server ended while
    the connection sat idle shows as unread input; replace it before anything is sent."""
    return _alive(conn) and not unread_input(conn.fileno())


class SyncPostgresBackend:
    """Implements the sync ``SyncBackend`` protocol over psycopg connections."""

    name = "postgresql"

    def __init__(self, config: Config) -> None:
        if not isinstance(config.options.get("ssl", ""), str):
            raise InterfaceError(
                "the ssl option: an ssl.SSLContext works only with the async face (asyncpg); "
                "with connect_sync pass a mode ('require', 'verify-full', ...) and give "
                "certificates as sslrootcert/sslcert/sslkey in the URL"
            )
        self.stats = Stats(config.slow_query_ms)
        self._config = config
        self._min_size = int(config.get("min_size", 1))
        cache = config.options.get("statement_cache_size")
        self._prepare_threshold = None if cache == 0 else PREPARE_THRESHOLD
        options = pool_options(config)
        self._max_size = int(options["max_size"])
        self._pool: SyncPool[psycopg.Connection[Any]] = SyncPool(
            "postgresql",
            stats=self.stats,
            opener=self._open,
            closer=self._close_conn,
            checker=_idle_alive,
            **options,
        )
        self._all: set[psycopg.Connection[Any]] = set()
        self._guard = threading.Lock()
        self._closing = False
        self._sessions = 0

    @classmethod
    def open(cls, config: Config) -> SyncPostgresBackend:
        backend = cls(config)
        conns = []
        try:
            for _ in range(max(1, backend._min_size)):
                conns.append(backend._pool.acquire())
        except BaseException:
            for conn in conns:
                backend._pool.release(conn)
            backend.close()
            raise
        for conn in conns:
            backend._pool.release(conn)
        return backend

    # -- connections --------------------------------------------------------------------------

    def _open(self) -> psycopg.Connection[Any]:
        config = self._config
        deadline = time.monotonic() + config.acquire_timeout
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            failure: CannotConnect | None = None
            try:
                conn = _Connection.connect(
                    config.url,
                    autocommit=True,
                    prepare_threshold=self._prepare_threshold,
                    cursor_factory=psycopg.RawCursor,
                    row_factory=tuple_row,
                    connect_timeout=max(1, int(min(10.0, remaining))),
                    **({"sslmode": config.options["ssl"]} if config.options.get("ssl") else {}),
                )
            except psycopg.Error as exc:
                self.stats.connection_errors += 1
                state = str(getattr(exc, "sqlstate", "") or "")
                if not (is_permanent(exc) or time.monotonic() + delay >= deadline):
                    pause, delay = backoff(delay)
                    time.sleep(pause)
                    continue
                detail = config.hide(f"{type(exc).__name__}: {exc}")
                failure = CannotConnect(
                    f"cannot connect to {config.redacted_url}: {detail}", sqlstate=state or None
                )
            if failure is not None:  # raised outside ``except``: the driver's error, which may
                raise failure  # quote the password, is neither its cause nor its context
            conn.shapes = {}
            conn.adapters.register_dumper(dict, _JsonDumper)
            conn.adapters.register_dumper(list, _JsonDumper)
            conn.adapters.register_dumper(SqlArray, ListDumper)  # ``IN :ids`` -> ``= ANY($n)``
            run_hook_sync(config.get("on_connect", None), conn)
            with self._guard:
                self._all.add(conn)
            return conn

    def _close_conn(self, conn: psycopg.Connection[Any]) -> None:
        with self._guard:
            self._all.discard(conn)
        try:
            conn.close()
        except psycopg.Error:  # pragma: no cover
            pass

    def _give_back(
        self, conn: psycopg.Connection[Any], *, dirty: bool, commit: bool = False
    ) -> None:
        if not _alive(conn):
            self._pool.release(conn, discard=True)
            return
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("COMMIT" if commit else "ROLLBACK")
            if dirty:
                # several statements: the simple protocol, never a (failing) prepared statement
                conn.execute(RESET_QUERY, prepare=False)
                # RESET ALL also undid the hook's SET search_path...: run it again
                run_hook_sync(self._config.get("on_connect", None), conn)
        except (psycopg.Error, Error):
            self._pool.release(conn, discard=True)
            return
        except BaseException:  # interrupted while resetting: never reuse it
            self._pool.release(conn, discard=True)
            raise
        self._pool.release(conn)

    # -- autocommit ---------------------------------------------------------------------------

    def run(
        self, kind: Op, info: SqlInfo, params: Params, arg: Column, timeout: float | None
    ) -> Any:
        pool = self._pool
        for attempt in range(self._max_size + 1):
            conn = pool.try_acquire()
            if conn is None:
                if timeout is None:
                    conn = pool.acquire()
                else:  # the call's timeout= bounds the wait too, as SQLite's writer wait
                    got, timeout = acquire_within(pool, timeout)
                    conn = got
            try:
                result = execute(conn, kind, info, params, arg, timeout)
            except Exception as exc:
                if not _alive(conn) or isinstance(exc, ConnectionLost):
                    pool.release(conn, discard=True)
                    if may_move_on(exc, attempt, self._max_size):
                        continue
                else:
                    self._give_back(conn, dirty=info.changes_session)
                raise
            except BaseException:  # Ctrl-C, SystemExit: passes through; the state is unknown
                pool.release(conn, discard=True)
                raise
            self._give_back(conn, dirty=info.changes_session)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    run_now = run  # the sync face always answers at once

    # -- sessions -----------------------------------------------------------------------------

    def writes(self, info: SqlInfo, refusal: BaseException | None = None) -> bool:
        return info.is_write  # nothing to learn: every connection can write

    def acquire(self, *, write: bool, timeout: float | None) -> PgSyncSession:
        conn = self._pool.acquire(timeout)
        with self._guard:
            self._sessions += 1
        return PgSyncSession(conn, readonly=not write)

    def release(self, session: Any, *, discard: bool = False) -> None:
        assert isinstance(session, PgSyncSession)
        with self._guard:
            self._sessions -= 1
        if discard:
            self._pool.release(session.conn, discard=True)
            return
        self._give_back(session.conn, dirty=session.dirty, commit=session.cursor_tx)

    # -- state --------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, int]:
        return self._pool.gauges()

    def busy(self) -> bool:
        return self._sessions > 0 or self._pool.gauges()["in_use"] > 0

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._pool.close()
        with self._guard:
            conns = list(self._all)
            self._all.clear()
        for conn in conns:
            try:
                conn.close()
            except psycopg.Error:  # pragma: no cover
                pass
