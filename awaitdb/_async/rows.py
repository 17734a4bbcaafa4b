"""``Rows``: the stream behind ``iterate()``, fetching ``batch_size`` rows per hand-off.

Outside a block it borrows a read connection for the stream's lifetime and gives it back as soon
as the rows run out, the loop breaks (``async with``/``aclose``) or the object is collected.

``timeout=`` bounds the whole iteration's database work: the time spent opening the cursor and
fetching every batch adds up, each step gets what is left (the backend cancels it on the
database past that), and ``QueryTimeout`` ends the stream. Time the caller spends between
batches does not count. Without it each step is bounded by ``statement_timeout``, if set.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._compat import ASYNC
from .._errors import InterfaceError, QueryTimeout
from .._record import Record
from .._sql import analyze, bind_lists, check_params
from .backend import Session

if TYPE_CHECKING:
    from .database import Database
    from .transaction import Scope

__all__ = ["Rows"]


class Rows:
    """An async iterator of records; also an async context manager that closes it early."""

    def __init__(
        self,
        db: Database,
        scope: Scope | None,
        sql: str,
        params: Any,
        batch_size: int,
        timeout: float | None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InterfaceError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._db = db
        self._scope = scope
        self._sql = sql
        self._params = params
        self._batch_size = batch_size
        self._timeout = timeout
        self._buffer: deque[Record] = deque()
        self._session: Session | None = None
        self._cursor: Any = None
        self._owns_session = False
        self._done = False
        self._budget: float | None = timeout  # seconds of database work left, if bounded
        if ASYNC:
            self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self) -> Rows:
        return self

    async def __anext__(self) -> Record:
        buffer = self._buffer
        if not buffer:
            if self._done:
                raise StopAsyncIteration
            await self._fill()
            if not buffer:
                raise StopAsyncIteration
        return buffer.popleft()

    async def _fill(self) -> None:
        if self._session is None:
            await self._open()
        session = self._session
        assert session is not None
        try:
            batch = await self._timed(session.fetch_cursor, self._cursor, self._batch_size)
        except BaseException:
            self._finish()
            raise
        self._buffer.extend(batch)
        if len(batch) < self._batch_size:
            await self._close()

    async def _open(self) -> None:
        db = self._db
        db._check_open()
        info = analyze(self._sql)
        check_params(info, self._params)
        if info.lists is not None:
            info, self._params = bind_lists(info, self._params, db._backend.name)
        scope = self._scope if self._scope is not None else db._scope.get()
        backend = db._backend
        if scope is None:
            session = await backend.acquire(write=backend.writes(info), timeout=None)
            self._owns_session = True
        else:
            session = await scope._session_for(info, self._timeout)
        self._session = session
        if ASYNC:
            self._loop = asyncio.get_running_loop()
        try:
            self._cursor = await self._timed(session.open_cursor, info, self._params)
        except BaseException as exc:
            # A read-only connection refused a write it could not see coming: nothing ran, so
            # the stream starts again on the writer (the backend remembers the statement writes).
            moved = self._owns_session and session.readonly and backend.writes(info, exc)
            self._finish()
            if not moved:
                raise
            self._done = False
            self._session = await backend.acquire(write=True, timeout=None)
            try:
                self._cursor = await self._timed(self._session.open_cursor, info, self._params)
            except BaseException:
                self._finish()
                raise

    async def _timed(self, step: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run one cursor step within what is left of the iteration's timeout."""
        budget = self._budget
        if budget is None:
            return await step(*args, self._db._statement_timeout)
        if budget <= 0:
            await self._close()  # nothing runs on the connection: close the cursor cleanly
            raise QueryTimeout(
                f"the iteration ran past its timeout ({self._timeout} s of database work)",
                sqlstate="57014",
            )
        start = time.monotonic()
        try:
            return await step(*args, budget)
        finally:
            self._budget = budget - (time.monotonic() - start)

    async def _close(self) -> None:
        """Close the cursor on its connection, then give a borrowed connection back."""
        if self._done:
            return
        session, cursor = self._session, self._cursor
        self._cursor = None
        if session is not None and cursor is not None:
            try:
                await session.close_cursor(cursor)
            except BaseException:
                self._finish()
                raise
        self._finish()

    def _finish(self) -> None:
        """Give a borrowed connection back without waiting; the backend resets it if needed."""
        if self._done:
            return
        self._done = True
        session, self._session = self._session, None
        self._cursor = None
        if session is not None and self._owns_session:
            self._db._backend.release(session)

    async def aclose(self) -> None:
        """Stop early and give the connection back."""
        self._buffer.clear()
        await self._close()

    async def __aenter__(self) -> Rows:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if getattr(self, "_done", True) or self._session is None:
            return
        try:
            if ASYNC:
                # Garbage collection may run in any thread: give the connection back on the
                # loop that owns it.
                if self._loop is not None:
                    self._loop.call_soon_threadsafe(self._finish)
            else:
                self._finish()
        except Exception:  # noqa: BLE001  # pragma: no cover - the loop or interpreter is gone
            pass
