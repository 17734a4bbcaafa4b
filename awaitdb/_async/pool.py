"""A FIFO pool of connections (or connection-owning workers), shared by every backend.

Waiters are served first come, first served: ``release`` hands the item straight to the oldest
waiter instead of waking everyone to race for it. ``acquire_timeout`` bounds the wait
(``PoolTimeout``, with the pool's gauges in the message) and ``max_waiting`` bounds the queue
(``PoolOverloaded``). Items older than ``max_lifetime`` or idle longer than ``max_idle`` are
closed when seen; a discarded item frees its slot for the next waiter to open a new one.

New connections are opened by the pool in a task of its own (async face): a caller cancelled
while a connection is being opened does not cancel the opening; the pool keeps the connection
and hands it to the next waiter (or the idle list). A freed slot handed to a waiter that has
just been cancelled goes back to the pool, never into the idle list.

Async face, timeouts: waiters do not each carry a timer (``asyncio.timeout`` costs about 4 µs
per wait, paid on every acquisition of a busy pool). The pool keeps one loop timer armed at the
earliest deadline it knows of; when it fires, every waiter past its deadline is failed with
``TimeoutError`` and the timer is re-armed at the next deadline. A busy pool with a 30 s
``acquire_timeout`` wakes that timer about once every 30 s.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .._compat import ASYNC, ANoLock, AWaiter
from .._errors import InterfaceError, PoolOverloaded, PoolTimeout, QueryTimeout
from .._stats import Stats, note_acquire_wait

__all__ = ["Pool", "acquire_within"]

T = TypeVar("T")


class _Grow:
    """Handed to a waiter instead of an item: a slot is free, open a new connection."""


_GROW: Any = _Grow()


class Pool(Generic[T]):
    """Lend items FIFO; open them on demand up to ``max_size`` with ``opener``."""

    def __init__(
        self,
        name: str,
        *,
        stats: Stats,
        max_size: int,
        acquire_timeout: float,
        max_waiting: int | None = None,
        opener: Callable[[], Awaitable[T]] | None = None,
        closer: Callable[[T], None] | None = None,
        checker: Callable[[T], bool] | None = None,
        max_idle: float | None = None,
        max_lifetime: float | None = None,
        items: list[T] | None = None,
    ) -> None:
        self.name = name
        self._stats = stats
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._max_waiting = max_waiting
        self._opener = opener
        self._closer = closer
        self._checker = checker  # a quick local test: False means the item is dead
        self._max_idle = max_idle
        self._max_lifetime = max_lifetime
        now = time.monotonic()
        self._idle: deque[tuple[T, float]] = deque((item, now) for item in items or [])
        self._born: dict[int, float] = {id(item): now for item in items or []}
        self._size = len(self._idle)
        self._waiters: deque[AWaiter[T]] = deque()
        self._lock = ANoLock()
        self._opening: set[Any] = set()  # async face: openings whose caller gave up
        self._timer: Any = None  # async face: the one deadline timer of every waiter
        self._timer_at = 0.0
        self._ages = max_idle is not None or max_lifetime is not None
        self.closed = False

    # -- lending -------------------------------------------------------------------------------

    def try_acquire(self) -> T | None:
        """An idle, live item at once, or ``None`` (then ``acquire`` waits or opens one)."""
        if self.closed or self._waiters:
            return None
        stats = self._stats
        with self._lock:
            while self._idle:
                item, since = self._idle.pop()
                if self._ages and self._expired(item, since):
                    self._drop(item)
                    continue
                if self._checker is not None:
                    try:
                        alive = self._checker(item)
                    except BaseException:  # Ctrl-C during the check: the item stays ours
                        self._idle.append((item, since))
                        raise
                    if not alive:
                        stats.connections_replaced += 1  # found dead: replaced, unseen
                        self._drop(item)
                        continue
                stats.acquisitions += 1
                stats.acquire_waits.append(0.0)
                return item
        return None

    async def acquire(self, timeout: float | None = None) -> T:
        """An item, waiting FIFO up to ``timeout`` (default ``acquire_timeout``) for one.

        One flat frame on purpose: a busy pool makes most callers wait here, and every frame
        between the caller and the waiter's future is resumed on each hand-off.
        """
        if self.closed:
            raise InterfaceError("the database is closed")
        item = self.try_acquire()
        if item is not None:
            return item
        stats = self._stats
        start = time.perf_counter()
        try:
            stats.acquisitions += 1
            with self._lock:
                if self._size < self._max_size and self._opener is not None and not self._waiters:
                    self._size += 1
                    grow = True
                else:
                    if self._max_waiting is not None and len(self._waiters) >= self._max_waiting:
                        stats.acquire_overloads += 1
                        raise PoolOverloaded(
                            f"{len(self._waiters)} callers already waiting for a connection "
                            f"(max_waiting={self._max_waiting}); {self._describe()}"
                        )
                    grow = False
                    waiter: AWaiter[T] = AWaiter()
                    self._waiters.append(waiter)
            if grow:
                return await self._open_new()
            if timeout is None:
                timeout = self._acquire_timeout
            try:
                if ASYNC:
                    self._arm(waiter, timeout)  # the pool's one timer fails it at its deadline
                    item = await waiter  # straight on the future: no frame in between
                else:
                    item = await waiter.wait(timeout)
            except BaseException as exc:
                error = self._gave_up(waiter, exc, timeout)
                if error is exc:
                    raise
                raise error from None
            if item is _GROW:
                return await self._open_new()
            return item
        finally:
            # One wait sample per slow acquisition, failed ones too (a timeout waited in full).
            waited = time.perf_counter() - start
            stats.acquire_waits.append(waited)
            note_acquire_wait(waited)  # not counted as query time

    def _gave_up(self, waiter: AWaiter[T], exc: BaseException, timeout: float) -> BaseException:
        """A waiter stopped waiting (timeout, cancellation): pass on anything handed to it
        meanwhile; return what to raise (``PoolTimeout`` for a timeout)."""
        with self._lock:
            got, item = waiter.abandon()
            if not got:
                self._remove_waiter(waiter)
        if got and item is _GROW:
            self._free_slot()  # a slot was handed over just as we gave up: pass it on
        elif got:
            self.release(item)  # it was handed over just as we gave up: pass it on
        if isinstance(exc, TimeoutError):
            self._stats.acquire_timeouts += 1
            return PoolTimeout(f"no connection became free within {timeout:g}s; {self._describe()}")
        return exc

    async def _open_new(self) -> T:
        assert self._opener is not None
        if ASYNC:
            # The pool's own task: cancelling the caller must not cancel a half-open connection.
            task = asyncio.ensure_future(self._opener())
            try:
                item = await asyncio.shield(task)
            except BaseException:
                if not task.done():
                    self._opening.add(task)
                    task.add_done_callback(self._adopt)
                elif not task.cancelled() and task.exception() is None:
                    self._adopt(task)  # opened just as the caller gave up: keep it
                else:
                    self._free_slot()
                raise
        else:
            try:
                item = await self._opener()
            except BaseException:
                self._free_slot()
                raise
        self._born[id(item)] = time.monotonic()
        return item

    if ASYNC:

        def _arm(self, waiter: AWaiter[T], timeout: float) -> None:
            """Note ``waiter``'s deadline; arm the pool's timer if it is the earliest one."""
            if timeout == math.inf:
                return  # waits for ever: no deadline
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            waiter.deadline = deadline
            timer = self._timer
            if timer is None or deadline < self._timer_at:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._expire)
                self._timer_at = deadline

        def _expire(self) -> None:
            """The timer fired: fail every waiter past its deadline, re-arm for the next one."""
            self._timer = None
            loop = asyncio.get_running_loop()
            now = loop.time() + 1e-6  # asyncio may fire a timer a clock tick early
            live: deque[AWaiter[T]] = deque()
            expired: list[AWaiter[T]] = []
            earliest: float | None = None
            with self._lock:
                for waiter in self._waiters:
                    deadline = waiter.deadline
                    if deadline is not None and deadline <= now:
                        expired.append(waiter)
                        continue
                    live.append(waiter)
                    if deadline is not None and (earliest is None or deadline < earliest):
                        earliest = deadline
                self._waiters = live
            if earliest is not None:
                self._timer = loop.call_at(earliest, self._expire)
                self._timer_at = earliest
            for waiter in expired:
                waiter.fail(TimeoutError())

        def _adopt(self, task: asyncio.Future[T]) -> None:
            """A connection opened for a caller who gave up: give it to the next waiter."""
            self._opening.discard(task)
            if task.cancelled() or task.exception() is not None:  # retrieved: no log noise
                self._free_slot()
                return
            item = task.result()
            self._born[id(item)] = time.monotonic()
            if self.closed:
                self._drop(item)
            else:
                self.release(item)

        async def settle(self, timeout: float) -> None:
            """Wait up to ``timeout`` for openings nobody waits for any more, then cancel them."""
            pending = list(self._opening)
            if pending:
                await asyncio.wait(pending, timeout=timeout)
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=timeout)

    def release(self, item: T, *, discard: bool = False) -> None:
        """Give ``item`` back: to the oldest waiter, else to the idle list. Never waits."""
        if discard or self.closed or (self._ages and self._expired(item, time.monotonic())):
            if discard and not self.closed:
                self._stats.connections_replaced += 1
            self._drop(item)
            return
        with self._lock:
            while self._waiters:
                if self._waiters.popleft().set(item):
                    return
            self._idle.append((item, time.monotonic()))

    def _drop(self, item: T) -> None:
        self._born.pop(id(item), None)
        if self._closer is not None:
            self._closer(item)
        self._free_slot()

    def _free_slot(self) -> None:
        with self._lock:
            self._size -= 1
            if self.closed or self._opener is None:
                return
            while self._waiters and self._size < self._max_size:
                if self._waiters.popleft().set(_GROW):
                    self._size += 1
                    return

    def _remove_waiter(self, waiter: AWaiter[T]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _expired(self, item: T, idle_since: float) -> bool:
        now = time.monotonic()
        if self._max_idle is not None and now - idle_since > self._max_idle:
            return True
        if self._max_lifetime is not None:
            born = self._born.get(id(item))
            if born is not None and now - born > self._max_lifetime:
                return True
        return False

    # -- state ---------------------------------------------------------------------------------

    def gauges(self) -> dict[str, int]:
        """Size, max size, idle, in use and waiting, for ``stats()``."""
        idle = len(self._idle)
        return {
            "size": self._size,
            "max_size": self._max_size,
            "idle": idle,
            "in_use": self._size - idle,
            "waiting": len(self._waiters),
        }

    def _describe(self) -> str:
        g = self.gauges()
        return (
            f"pool {self.name!r}: size={g['size']}/{g['max_size']} idle={g['idle']} "
            f"in_use={g['in_use']} waiting={g['waiting']}"
        )

    def take_idle(self) -> list[T]:
        """Remove and return every idle item (for closing)."""
        with self._lock:
            items = [item for item, _ in self._idle]
            self._idle.clear()
            return items

    def close(self) -> None:
        """Refuse new acquisitions and fail every waiter."""
        with self._lock:
            self.closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
        if ASYNC:  # noqa: SIM102 - the generator drops ``if ASYNC:`` blocks from the sync face
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for waiter in waiters:
            waiter.fail(InterfaceError("the database was closed while waiting for a connection"))


async def acquire_within(pool: Pool[T], timeout: float) -> tuple[T, float]:
    """An item within a call's ``timeout`` and the time left of it: ``QueryTimeout`` past it
    (what a statement waiting for SQLite's writer raises), ``PoolTimeout`` past a shorter
    ``acquire_timeout``."""
    start = time.perf_counter()
    limit = pool._acquire_timeout
    try:
        item = await pool.acquire(min(timeout, limit))
    except PoolTimeout:
        if timeout >= limit:
            raise
        raise QueryTimeout(
            f"the statement timed out after {timeout:g}s waiting for a connection"
        ) from None
    left = timeout - (time.perf_counter() - start)
    if left <= 0:
        pool.release(item)
        raise QueryTimeout(f"the statement timed out after {timeout:g}s waiting for a connection")
    return item, left
