"""The async PostgreSQL backend on asyncpg: one round trip per autocommit statement.

- Autocommit statements run on a pooled connection with no BEGIN/COMMIT around them and no
  reset on release. A reset (rollback, ``RESET ALL``, ``UNLISTEN *``, advisory unlock,
  ``DISCARD TEMP``) runs only when the connection's session state was changed: an open
  transaction, ``SET``, ``LISTEN``, advisory locks or temp tables. It runs in the background,
  and the connection rejoins the pool after it.
- asyncpg caches prepared statements per connection (``statement_cache_size``; 0 behind
  PgBouncer in transaction mode); ``:name`` to ``$n`` translation is cached per SQL text.
- New connections are retried with jittered backoff until ``acquire_timeout``, then
  ``CannotConnect``. A connection found dead on checkout (closed, or with the server's goodbye
  unread in its socket) is replaced without the caller seeing it. Only a statement asyncpg
  never sent moves on to another connection; one that was sent may have written, so its
  connection dying raises ``ConnectionLost`` (issue 8).
- Timeouts and cancellations cancel the statement on the server (asyncpg sends a
  CancelRequest); the connection's next statement waits for that to finish.
"""

from __future__ import annotations

import asyncio
import operator
import select
import time
from collections.abc import Mapping
from typing import Any

import asyncpg

from .._async.backend import NOT_NOW
from .._async.pool import Pool, acquire_within
from .._config import Config
from .._errors import (
    CannotConnect,
    QueryTimeout,
    TransactionAborted,
)
from .._hooks import run_hook
from .._ops import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Column, Op, Params
from .._record import Record, column_index, record_class
from .._sql import TXCONTROL, SqlInfo
from .._stats import Stats
from .codecs import install_codecs
from .common import (
    RESET_QUERY,
    backoff,
    begin_sql,
    build_records,
    is_permanent,
    may_move_on,
    pool_options,
)
from .dialect import DIALECT
from .errors import command_count, is_connection_error, too_deep, translate

__all__ = ["PostgresBackend"]

_DRIVER_ERRORS = (
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,  # protocol state lost: connection unusable
    OSError,
)


_NAME = DIALECT.name
_VALUES = operator.itemgetter(slice(None))  # asyncpg row -> tuple of its values, in C


def _record_cls(row: asyncpg.Record) -> type[Record]:
    # By column names, from the process-wide cache: nothing learned on the shared ``SqlInfo``
    # or per connection (cheaper under callgrind than a per-connection cache keyed by text).
    return record_class(tuple(row.keys()))


def _column(row: asyncpg.Record, column: int | str) -> Any:
    return row[column_index(list(row.keys()), column)]


async def execute(
    conn: asyncpg.Connection, kind: Op, info: SqlInfo, params: Any, arg: Any, timeout: float | None
) -> Any:
    """Run one statement on ``conn``, shaped by ``kind``; driver errors become awaitdb errors.

    ``params``/``arg`` are the seam's ``Params``/``Column``, left ``Any`` here: ``kind`` says
    which form they take (rows for EXECUTE_MANY), and narrowing would cost on the hot path."""
    sql = info.texts.get(_NAME) or info.text_for(DIALECT)  # the call only on the first run
    try:
        if kind is EXECUTE_MANY:
            await conn.executemany(sql, [info.positional(p) for p in params], timeout=timeout)
            return len(params)
        order = info.order
        args = [params[name] for name in order] if order else ()
        if kind is FETCH_ONE:
            row = await conn.fetchrow(sql, *args, timeout=timeout)
            return None if row is None else _record_cls(row)(row)
        if kind is FETCH_ALL:
            rows = await conn.fetch(sql, *args, timeout=timeout)
            if not rows:
                return []
            return build_records(_record_cls(rows[0]), rows, _VALUES)
        if kind is EXECUTE:
            status = await conn.execute(sql, *args, timeout=timeout)
            if info.kind == TXCONTROL and status == "ROLLBACK" and not _is_rollback(info):
                raise TransactionAborted(
                    "the transaction had already failed: PostgreSQL rolled it back at COMMIT"
                )
            return command_count(status)
        if arg == 0 and type(arg) is int:
            return await conn.fetchval(sql, *args, timeout=timeout)
        row = await conn.fetchrow(sql, *args, timeout=timeout)
        return None if row is None else _column(row, arg)
    except _DRIVER_ERRORS as exc:
        raise translate(exc, info) from exc
    except RecursionError:  # asyncpg could not even describe the JSON value it failed to encode
        raise too_deep(info, params, decoding=False) from None


def _is_rollback(info: SqlInfo) -> bool:
    return info.sql.lstrip().upper().startswith("ROLLBACK")


class PgSession:
    """A connection lent to a transaction, pinned block or cursor; serializes its callers."""

    __slots__ = ("_lock", "conn", "cursor_tx", "dirty", "readonly", "unsure")

    def __init__(self, conn: asyncpg.Connection, readonly: bool) -> None:
        self.conn = conn
        self.readonly = readonly
        self.dirty = False  # session state changed: reset before the next caller
        self.cursor_tx = False  # we opened a transaction for a streaming cursor
        self.unsure = False  # a statement was interrupted: the protocol state is not known yet
        self._lock = asyncio.Lock()  # asyncpg runs one operation at a time per connection

    @property
    def in_transaction(self) -> bool:
        return self.unsure or _in_transaction(self.conn)

    async def run(
        self, kind: Op, info: SqlInfo, params: Params, arg: Column, timeout: float | None
    ) -> Any:
        async with self._lock:
            if info.changes_session:
                self.dirty = True
            try:
                result = await execute(self.conn, kind, info, params, arg, timeout)
            except BaseException as exc:
                self._interrupted(exc)
                raise
            self.unsure = False  # a statement completed: the protocol is in step again
            return result

    async def open_cursor(
        self, info: SqlInfo, params: Mapping[str, Any] | None, timeout: float | None = None
    ) -> Any:
        async with self._lock:
            try:
                if not _in_transaction(self.conn):  # asyncpg cursors live in a transaction
                    self.cursor_tx = True
                    # never READ ONLY from a guess: ``SELECT f()`` may write
                    await self.conn.execute(begin_sql(None, readonly=False))
                args = info.positional(params) if info.order else ()
                return await self.conn.cursor(info.text_for(DIALECT), *args, timeout=timeout), info
            except BaseException as exc:
                self._interrupted(exc)
                if isinstance(exc, _DRIVER_ERRORS):
                    raise translate(exc, info) from exc
                raise

    async def fetch_cursor(
        self, cursor: Any, size: int, timeout: float | None = None
    ) -> list[Record]:
        handle, info = cursor
        async with self._lock:
            try:
                rows = await handle.fetch(size, timeout=timeout)
            except BaseException as exc:
                self._interrupted(exc)
                if isinstance(exc, _DRIVER_ERRORS):
                    raise translate(exc, info) from exc
                raise
        if not rows:
            return []
        return build_records(_record_cls(rows[0]), rows, _VALUES)

    async def close_cursor(self, cursor: Any) -> None:
        if not self.cursor_tx:
            return  # inside the caller's transaction: the portal ends with it
        async with self._lock:
            try:
                await self.conn.execute("COMMIT")
            except BaseException as exc:
                self._interrupted(exc)
                if isinstance(exc, _DRIVER_ERRORS):
                    raise translate(exc) from exc
                raise
            self.cursor_tx = False

    def _interrupted(self, exc: BaseException) -> None:
        if _interrupted(exc):
            self.unsure = True


def _interrupted(exc: BaseException) -> bool:
    """The statement was cut off mid-flight: the connection's state is unknown until reset."""
    return isinstance(exc, asyncio.CancelledError | QueryTimeout) or is_connection_error(exc)


def _poller(conn: asyncpg.Connection) -> select.poll | None:
    """A poll object watching ``conn``'s socket for input, made once per connection."""
    transport = getattr(conn, "_transport", None)  # asyncpg keeps it; no public accessor
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None:
        return None
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return poller


def _in_transaction(conn: asyncpg.Connection) -> bool:
    """asyncpg's ``is_in_transaction``, False once the connection is closed or terminated
    (asyncpg then has no protocol left to ask and raises ``AttributeError``)."""
    return not conn.is_closed() and bool(conn.is_in_transaction())


class PostgresBackend:
    """Implements the async ``Backend`` protocol over asyncpg connections."""

    name = "postgresql"

    def __init__(self, config: Config) -> None:
        self.stats = Stats(config.slow_query_ms)
        self._config = config
        self._min_size = int(config.get("min_size", 1))
        self._connect_kwargs: dict[str, Any] = {}
        if "statement_cache_size" in config.options:
            self._connect_kwargs["statement_cache_size"] = int(
                config.options["statement_cache_size"]
            )
        if config.get("ssl", None) is not None:
            self._connect_kwargs["ssl"] = config.options["ssl"]
        options = pool_options(config)
        self._max_size = int(options["max_size"])
        self._pool: Pool[asyncpg.Connection] = Pool(
            "postgresql",
            stats=self.stats,
            opener=self._open,
            closer=self._terminate,
            checker=self._alive,
            **options,
        )
        self._all: set[asyncpg.Connection] = set()
        self._pollers: dict[asyncpg.Connection, select.poll | None] = {}
        self._resets: set[asyncio.Task[None]] = set()
        self._closing = False
        self._sessions = 0

    @classmethod
    async def open(cls, config: Config) -> PostgresBackend:
        backend = cls(config)
        conns = await asyncio.gather(
            *(backend._pool.acquire() for _ in range(max(1, backend._min_size))),
            return_exceptions=True,
        )
        errors = [c for c in conns if isinstance(c, BaseException)]
        for conn in conns:
            if not isinstance(conn, BaseException):
                backend._pool.release(conn)
        if errors:
            await backend.close()
            raise errors[0]
        return backend

    # -- connections --------------------------------------------------------------------------

    async def _open(self) -> asyncpg.Connection:
        config = self._config
        deadline = time.monotonic() + config.acquire_timeout
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            failure: CannotConnect | None = None
            try:
                conn = await asyncpg.connect(
                    config.url,
                    timeout=max(0.5, min(10.0, remaining)),
                    **self._connect_kwargs,
                )
            except Exception as exc:  # noqa: BLE001 - reported as CannotConnect, retried
                self.stats.connection_errors += 1
                state = str(getattr(exc, "sqlstate", "") or "")
                if not (is_permanent(exc) or time.monotonic() + delay >= deadline):
                    pause, delay = backoff(delay)
                    await asyncio.sleep(pause)
                    continue
                detail = config.hide(f"{type(exc).__name__}: {exc}")
                failure = CannotConnect(
                    f"cannot connect to {config.redacted_url}: {detail}", sqlstate=state or None
                )
            if failure is not None:  # raised outside ``except``: the driver's error, which may
                raise failure  # quote the password, is neither its cause nor its context
            try:
                await self._init(conn)
            except BaseException:
                conn.terminate()
                raise
            self._all.add(conn)
            self._pollers[conn] = _poller(conn)
            return conn

    async def _init(self, conn: asyncpg.Connection) -> None:
        await install_codecs(conn)
        await run_hook(self._config.get("on_connect", None), conn, close=_terminate_raw)

    def _terminate(self, conn: asyncpg.Connection) -> None:
        self._all.discard(conn)
        self._pollers.pop(conn, None)
        conn.terminate()

    def _alive(self, conn: asyncpg.Connection) -> bool:
        """Checked on checkout from the idle list: closed, or ended by the server while the
        loop has not yet read its goodbye (the loop was blocked), means dead: replace it
        before anything is sent. One ``poll`` system call on the connection's own poller."""
        if conn.is_closed():
            return False
        poller = self._pollers.get(conn)
        try:
            return poller is None or not poller.poll(0)
        except OSError:
            return False

    def _give_back(
        self,
        conn: asyncpg.Connection,
        *,
        dirty: bool,
        commit: bool = False,
        unsure: bool = False,
    ) -> None:
        """Return ``conn`` to the pool, resetting it first (in the background) if needed."""
        if conn.is_closed():
            self._pool.release(conn, discard=True)
        elif dirty or unsure or conn.is_in_transaction():  # open: asyncpg can answer
            reset = self._reset(conn, dirty, commit, unsure)
            task = asyncio.get_running_loop().create_task(reset)
            self._resets.add(task)
            task.add_done_callback(self._resets.discard)
        else:
            self._pool.release(conn)

    async def _reset(
        self, conn: asyncpg.Connection, dirty: bool, commit: bool, unsure: bool
    ) -> None:
        try:
            async with asyncio.timeout(10):
                # After an interruption the local transaction state may be stale: ROLLBACK
                # unconditionally (it also waits for the cancellation to finish).
                if unsure or _in_transaction(conn):
                    await conn.execute("COMMIT" if commit and not unsure else "ROLLBACK")
                if dirty:
                    await conn.execute(RESET_QUERY)
                    # RESET ALL also undid the hook's SET search_path...: run it again
                    await run_hook(self._config.get("on_connect", None), conn, close=_terminate_raw)
        except BaseException:
            self._pool.release(conn, discard=True)
            raise
        self._pool.release(conn)

    # -- autocommit ---------------------------------------------------------------------------

    def run_now(
        self, kind: Op, info: SqlInfo, params: Params, arg: Column, timeout: float | None
    ) -> Any:
        return NOT_NOW  # every statement is a round trip

    async def run(
        self, kind: Op, info: SqlInfo, params: Params, arg: Column, timeout: float | None
    ) -> Any:
        pool = self._pool
        for attempt in range(self._max_size + 1):
            conn = pool.try_acquire()
            if conn is None:
                if timeout is None:
                    conn = await pool.acquire()
                else:  # the call's timeout= bounds the wait too, as SQLite's writer wait
                    got, timeout = await acquire_within(pool, timeout)
                    conn = got
            try:
                result = await execute(conn, kind, info, params, arg, timeout)
            except BaseException as exc:
                if conn.is_closed() or is_connection_error(exc):
                    pool.release(conn, discard=True)
                    if may_move_on(exc, attempt, self._max_size):
                        continue
                else:
                    self._give_back(conn, dirty=info.changes_session, unsure=_interrupted(exc))
                raise
            self._give_back(conn, dirty=info.changes_session)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- sessions -----------------------------------------------------------------------------

    def writes(self, info: SqlInfo, refusal: BaseException | None = None) -> bool:
        return info.is_write  # nothing to learn: every connection can write

    async def acquire(self, *, write: bool, timeout: float | None) -> PgSession:
        conn = await self._pool.acquire(timeout)
        self._sessions += 1
        return PgSession(conn, readonly=not write)

    def release(self, session: Any, *, discard: bool = False) -> None:
        assert isinstance(session, PgSession)
        self._sessions -= 1
        if discard:
            self._pool.release(session.conn, discard=True)
            return
        self._give_back(
            session.conn, dirty=session.dirty, commit=session.cursor_tx, unsure=session.unsure
        )

    # -- state --------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, int]:
        return self._pool.gauges()

    def busy(self) -> bool:
        return self._sessions > 0 or self._pool.gauges()["in_use"] > 0

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._resets:
            await asyncio.wait(list(self._resets), timeout=2)
        self._pool.close()
        await self._pool.settle(2)
        idle = self._pool.take_idle()
        await asyncio.gather(
            *(conn.close(timeout=2) for conn in idle if not conn.is_closed()),
            return_exceptions=True,
        )
        for conn in list(self._all):
            conn.terminate()
        self._all.clear()
        self._pollers.clear()


def _terminate_raw(conn: asyncpg.Connection) -> None:
    conn.terminate()
