"""What both SQLite faces share: opening connections, running one operation, mapping errors.

The async face calls ``run_op`` in a worker thread and the sync face in the caller's thread, so
results, records and errors are the same on both by construction.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._config import Config
from .._errors import (
    CannotConnect,
    CheckViolation,
    DatabaseBusy,
    DatabaseError,
    DataError,
    Error,
    ForeignKeyViolation,
    IntegrityError,
    InterfaceError,
    NotNullViolation,
    OperationalError,
    ProgrammingError,
    QueryTimeout,
    UniqueViolation,
)
from .._ops import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Op
from .._record import Record, column_index, record_class
from .._sql import TXCONTROL, Positional, SqlInfo
from .types import adapt_params, register_converters

__all__ = [
    "Connection",
    "FileIdentity",
    "SQLiteTarget",
    "bind_error",
    "combined_gauges",
    "file_identity",
    "is_busy",
    "is_rollback",
    "wait_out_busy",
    "fetch_batch",
    "open_connection",
    "open_cursor",
    "run_op",
    "translate",
]

DEFAULT_BUSY_TIMEOUT = 5.0
BUSY_SLICE_S = 0.1  # SQLite's own busy wait per attempt; ``wait_out_busy`` repeats it


class SQLiteTarget:
    """Where and how to open connections for one ``Config``."""

    __slots__ = (
        "busy_timeout",
        "database",
        "foreign_keys",
        "journal_mode",
        "memory",
        "on_connect",
        "readers",
        "synchronous",
        "uri",
    )

    def __init__(self, config: Config) -> None:
        self.memory = config.is_memory
        if self.memory:
            # One shared in-memory database: a single connection serves every call.
            self.database = ":memory:"
            self.uri = False
        else:
            self.database = os.path.abspath(config.path)
            self.uri = False
        self.busy_timeout = float(config.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
        self.synchronous = str(config.get("synchronous", "normal"))
        self.foreign_keys = bool(config.get("foreign_keys", True))
        self.journal_mode = str(config.get("journal_mode", "memory" if self.memory else "wal"))
        self.readers = 0 if self.memory else int(config.get("readers", 4))
        self.on_connect = config.get("on_connect", None)  # see _hooks.py


class Connection(sqlite3.Connection):
    """A sqlite3 connection that keeps what it learned about its own results.

    ``shapes`` maps SQL text to ``(cursor description, Record class)`` of its last result on
    this connection: per connection, so two databases (or two schemas) running the same SQL
    text never share it, and checked against each new description, so a schema change that
    renames a column gives a new class, never a stale one.
    """

    __slots__ = ("shapes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shapes: dict[str, tuple[Any, type[Record]]] = {}


def open_connection(target: SQLiteTarget, *, readonly: bool) -> sqlite3.Connection:
    """A configured connection: autocommit, declared-type conversion, pragmas applied."""
    register_converters()
    try:
        if not target.memory:
            parent = os.path.dirname(target.database)
            if parent and not os.path.isdir(parent):
                raise CannotConnect(f"cannot open SQLite database: no directory {parent!r}")
        conn = sqlite3.connect(
            target.database,
            # SQLite's busy handler cannot be interrupted: wait in slices (see wait_out_busy) so
            # that a timeout, a cancellation or close() can stop a wait for another's lock.
            timeout=min(target.busy_timeout, BUSY_SLICE_S),
            detect_types=sqlite3.PARSE_DECLTYPES,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=512,
            uri=target.uri,
            factory=Connection,
        )
    except sqlite3.Error as exc:
        raise CannotConnect(f"cannot open SQLite database {target.database!r}: {exc}") from exc
    try:
        if not readonly:
            _set_journal_mode(conn, target)
        conn.execute(f"PRAGMA synchronous={target.synchronous}")
        conn.execute(f"PRAGMA foreign_keys={'ON' if target.foreign_keys else 'OFF'}")
        if readonly:
            conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


class FileIdentity:
    """The database file's (device, inode) when it was opened, to notice it deleted or replaced.

    Writes into a file that was deleted (or replaced by another) while open would be
    acknowledged and lost: the writer checks the path still names the same file (one ``stat``
    per batch of writes, none on reads) and fails writes with sqlstate 58P01 when it does not.
    """

    __slots__ = ("_key", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.stat(path)
        self._key = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """Why writes must fail now, or ``None`` while the path is still the open file."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError as exc:  # pragma: no cover - unreadable folder
            return f"unreachable ({exc.strerror})"
        return None if (st.st_dev, st.st_ino) == self._key else "replaced by another file"

    def refusal(self, problem: str) -> OperationalError:
        return OperationalError(
            f"the SQLite database file {self.path!r} was deleted or replaced while open "
            f"({problem}); writes are refused because they would be lost",
            sqlstate="58P01",
        )

    def check(self, info: SqlInfo) -> None:
        """Raise for a write (not a ROLLBACK) when the file is no longer the one opened."""
        problem = self.problem()
        if problem is not None and not is_rollback(info):
            raise self.refusal(problem)


def file_identity(target: SQLiteTarget) -> FileIdentity | None:
    return None if target.memory else FileIdentity(target.database)


def is_rollback(info: SqlInfo) -> bool:
    return info.kind == TXCONTROL and info.sql.lstrip()[:8].upper() == "ROLLBACK"


def is_busy(exc: BaseException) -> bool:
    """SQLite gave up waiting for another connection's lock (after one busy slice)."""
    return getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")


def wait_out_busy(
    exc: sqlite3.Error,
    conn: sqlite3.Connection,
    target: SQLiteTarget,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    give_up: Callable[[], Error | None],
) -> Any:
    """Retry ``call(*args)`` (which failed with ``exc``, SQLITE_BUSY) until ``busy_timeout``.

    Only for a statement that started outside a transaction and left none open: SQLite backed
    it out whole, so running it again is safe. Between slices ``give_up`` may end the wait
    (a timeout, a cancellation, a close that ran out of time) with the error it returns.
    """
    deadline = time.monotonic() + target.busy_timeout - BUSY_SLICE_S
    while True:
        if conn.in_transaction or time.monotonic() >= deadline:
            raise exc
        reason = give_up()
        if reason is not None:
            raise reason
        try:
            return call(*args)
        except sqlite3.OperationalError as again:
            if not is_busy(again):
                raise
            exc = again


def _set_journal_mode(conn: sqlite3.Connection, target: SQLiteTarget) -> None:
    """Switch the file to ``target.journal_mode`` unless it is there already.

    WAL mode is persistent, so usually only the file's first opener switches it. When several
    processes open a new file at once, the switch can fail with "database is locked" at once
    (SQLite does not wait for it with the busy handler): retry until ``busy_timeout``.
    """
    wanted = target.journal_mode
    current = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
    if current == wanted or (target.memory and current == "memory"):
        return
    deadline = time.monotonic() + max(target.busy_timeout, 0.1)
    delay = 0.005
    while True:
        try:
            mode = str(conn.execute(f"PRAGMA journal_mode={wanted}").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    if mode != wanted and not target.memory:
        raise CannotConnect(f"SQLite refused journal_mode={wanted} (got {mode})")


# -- running one operation ---------------------------------------------------------------------

_classes: dict[Any, type[Record]] = {}
MAX_SHAPES = 512  # statements whose result shape one connection remembers (its statement cache)


def _cls(description: Any) -> type[Record]:
    cls = _classes.get(description)
    if cls is None:
        cls = record_class(tuple(column[0] for column in description))
        if len(_classes) > 4096:
            _classes.clear()
        _classes[description] = cls
    return cls


def _learn_shape(conn: Any, sql: str, description: Any) -> type[Record]:
    """The Record class for ``description``, remembered on ``conn`` for ``sql``."""
    cls = record_class(tuple(column[0] for column in description))
    shapes: dict[str, tuple[Any, type[Record]]] = conn.shapes
    if len(shapes) >= MAX_SHAPES:
        shapes.clear()
    shapes[sql] = (description, cls)
    return cls


def run_op(conn: sqlite3.Connection, kind: Op, info: SqlInfo, params: Any, arg: Any) -> Any:
    """Run ``info.sql``, shaping the result by ``kind`` (see ``_ops``); raises sqlite3 errors.

    ``conn`` comes from ``open_connection`` (its ``shapes`` give each result's Record class
    with one dict lookup and one comparison). A value sqlite3 cannot bind (an int beyond 64
    bits, a str with a lone surrogate) raises a ``DataError`` that names the parameter.
    """
    sql = info.sql
    try:
        if kind is FETCH_ONE:
            cursor = conn.execute(sql, adapt_params(params))
            row = cursor.fetchone()
            if row is None:
                return None
            description = cursor.description
            shape = conn.shapes.get(sql)  # type: ignore[attr-defined]
            if shape is not None and shape[0] == description:
                return shape[1](row)
            return _learn_shape(conn, sql, description)(row)
        if kind is FETCH_ALL:
            cursor = conn.execute(sql, adapt_params(params))
            rows = cursor.fetchall()
            if not rows:
                return []
            description = cursor.description
            shape = conn.shapes.get(sql)  # type: ignore[attr-defined]
            if shape is not None and shape[0] == description:
                return list(map(shape[1], rows))
            return list(map(_learn_shape(conn, sql, description), rows))
        if kind is EXECUTE:
            cursor = conn.execute(sql, adapt_params(params))
            count = cursor.rowcount
            return count if count > 0 else 0
        if kind is EXECUTE_MANY:  # atomic: all rows or none, as on PostgreSQL
            seq: Sequence[Mapping[str, Any]] = params
            rows = [adapt_params(p) for p in seq]
            if conn.in_transaction:  # a savepoint: a failing row undoes this call's rows only
                conn.execute("SAVEPOINT awaitdb_execute_many")
                try:
                    count = conn.executemany(sql, rows).rowcount
                except BaseException:
                    if conn.in_transaction:  # an interrupted write rolled back everything
                        conn.execute("ROLLBACK TO awaitdb_execute_many")
                        conn.execute("RELEASE awaitdb_execute_many")
                    raise
                conn.execute("RELEASE awaitdb_execute_many")
            else:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # No cursor stays alive in this frame across COMMIT: a traceback that keeps
                    # one would keep its statement, and the file open after close().
                    count = conn.executemany(sql, rows).rowcount
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            return count if count > 0 else 0
        # FETCH_VAL
        cursor = conn.execute(sql, adapt_params(params))
        row = cursor.fetchone()
        if row is None:
            return None
        return row[arg] if arg == 0 else row[_column_index(cursor.description, arg)]
    except (OverflowError, UnicodeEncodeError) as exc:
        raise bind_error(exc, params, many=kind is EXECUTE_MANY) from exc


def bind_error(exc: BaseException, params: Any, *, many: bool = False) -> DataError:
    """A ``DataError`` naming the parameter sqlite3 could not bind (found by looking again)."""
    rows = params if many else [params]
    overflow = isinstance(exc, OverflowError)
    for index, row in enumerate(rows or ()):
        if isinstance(row, Positional):  # ``IN :ids`` bound by position: name each slot
            items: Any = zip(row.names, row, strict=False)
        elif isinstance(row, Mapping):
            items = row.items()
        else:
            continue
        for name, value in items:
            where = f":{name}" + (f" (row {index})" if many else "")
            if overflow and type(value) is int and not -(2**63) <= value < 2**63:
                return DataError(
                    f"cannot bind parameter {where}: {value} is outside SQLite's 64-bit "
                    "integer range",
                    sqlstate="22003",
                )
            if not overflow and isinstance(value, str) and not _encodable(value):
                return DataError(
                    f"cannot bind parameter {where}: the text contains a lone surrogate, "
                    "which UTF-8 cannot encode",
                    sqlstate="22021",
                )
    if overflow:
        return DataError(f"integer out of range for SQLite (64-bit): {exc}", sqlstate="22003")
    return DataError(f"text SQLite cannot encode: {exc}", sqlstate="22021")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _column_index(description: Any, column: int | str) -> int:
    return column_index([d[0] for d in description], column)


def open_cursor(conn: sqlite3.Connection, info: SqlInfo, params: Any) -> sqlite3.Cursor:
    """Start a streaming query."""
    try:
        return conn.execute(info.sql, adapt_params(params))
    except (OverflowError, UnicodeEncodeError) as exc:
        raise bind_error(exc, params) from exc


def fetch_batch(cursor: sqlite3.Cursor, size: int) -> list[Record]:
    """Up to ``size`` rows from a streaming cursor."""
    rows = cursor.fetchmany(size)
    if not rows:
        return []
    return list(map(_cls(cursor.description), rows))


def combined_gauges(*pools: Any) -> dict[str, int]:
    """The writer's and the readers' pool gauges added together, for ``stats()``."""
    keys = ("size", "max_size", "idle", "in_use", "waiting")
    gauges = [pool.gauges() for pool in pools if pool is not None]
    return {key: sum(g.get(key, 0) for g in gauges) for key in keys}


# -- errors ------------------------------------------------------------------------------------

_CONSTRAINT = re.compile(r"constraint failed: (.+)$")

_INTEGRITY: dict[str, tuple[type[DatabaseError], str]] = {
    "SQLITE_CONSTRAINT_UNIQUE": (UniqueViolation, "23505"),
    "SQLITE_CONSTRAINT_PRIMARYKEY": (UniqueViolation, "23505"),
    "SQLITE_CONSTRAINT_FOREIGNKEY": (ForeignKeyViolation, "23503"),
    "SQLITE_CONSTRAINT_NOTNULL": (NotNullViolation, "23502"),
    "SQLITE_CONSTRAINT_CHECK": (CheckViolation, "23514"),
}

# (substring of SQLite's message, class, SQLSTATE) for the generic SQLITE_ERROR code.
_MESSAGES: tuple[tuple[str, type[DatabaseError], str], ...] = (
    ("syntax error", ProgrammingError, "42601"),
    ("incomplete input", ProgrammingError, "42601"),
    ("no such table", ProgrammingError, "42P01"),
    ("no such column", ProgrammingError, "42703"),
    ("has no column", ProgrammingError, "42703"),
    ("no such function", ProgrammingError, "42883"),
    ("already exists", ProgrammingError, "42P07"),
    ("ambiguous column", ProgrammingError, "42702"),
    ("wrong number of arguments", ProgrammingError, "42883"),
    ("misuse of", ProgrammingError, "42803"),
    ("no such index", ProgrammingError, "42704"),
    ("no such savepoint", ProgrammingError, "3B001"),
    ("integer overflow", DataError, "22003"),
)


def translate(exc: BaseException, *, timed_out: bool = False) -> Error:
    """The ``awaitdb`` error for a sqlite3 (or binding) exception; chain it with ``from``.

    The finished frames of ``exc``'s traceback are cleared: the error is kept (and chained) by
    callers, and their locals (cursors, hence statements) would otherwise keep the database
    file, its -wal and -shm open after ``close()`` until a garbage-collection pass.
    """
    if exc.__traceback__ is not None:
        traceback.clear_frames(exc.__traceback__)
    if isinstance(exc, Error):
        return exc
    message = str(exc)
    if isinstance(exc, OverflowError):
        return DataError(f"integer out of range for SQLite (64-bit): {message}", sqlstate="22003")
    if not isinstance(exc, sqlite3.Error):
        return InterfaceError(message)
    name: str = getattr(exc, "sqlite_errorname", "") or ""
    if isinstance(exc, sqlite3.IntegrityError) or name.startswith("SQLITE_CONSTRAINT"):
        cls, state = _INTEGRITY.get(name, (IntegrityError, "23000"))
        match = _CONSTRAINT.search(message)
        return cls(message, sqlstate=state, constraint=match.group(1) if match else None)
    if name == "SQLITE_INTERRUPT":
        text = (
            "the statement ran past its timeout" if timed_out else "the statement was interrupted"
        )
        return QueryTimeout(f"{text} and was cancelled", sqlstate="57014")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return DatabaseBusy(
            f"{message}: the database file stayed locked by another connection past busy_timeout",
            sqlstate="55P03",
        )
    if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError | sqlite3.Warning):
        if "closed" in message.lower():
            return InterfaceError(f"the database is closed ({message})")
        return InterfaceError(message)
    if name == "SQLITE_FULL":
        return OperationalError(message, sqlstate="53100")  # PostgreSQL's disk_full
    if name.startswith("SQLITE_CANTOPEN"):
        return CannotConnect(message, sqlstate="08001")
    if name in {"SQLITE_MISMATCH", "SQLITE_TOOBIG"} or isinstance(exc, sqlite3.DataError):
        return DataError(message, sqlstate="22000")
    if name == "SQLITE_RANGE":
        return InterfaceError(message)
    if name == "SQLITE_ERROR" or not name:
        lowered = message.lower()
        for needle, cls, state in _MESSAGES:
            if needle in lowered:
                return cls(message, sqlstate=state)
    return OperationalError(message)


def is_readonly_refusal(exc: BaseException) -> bool:
    """True when a ``query_only`` reader refused a statement that writes."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", "").startswith(
        "SQLITE_READONLY"
    )


def is_interrupt(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", "") == (
        "SQLITE_INTERRUPT"
    )
