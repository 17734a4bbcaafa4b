"""The few primitives where the async and sync faces differ: how they wait, sleep and lock.

Code under ``awaitdb/_async`` uses the ``A``-prefixed names; ``tools/async_to_sync.py`` renames
them to their sync twins when it generates ``awaitdb/_sync``. ``if ASYNC:`` blocks are kept in the
async face and replaced by their ``else:`` branch in the sync face.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Generator
from typing import Any, Generic, TypeVar

__all__ = ["ASYNC", "ANoLock", "AWaiter", "RLock", "Waiter", "asleep", "isawaitable", "sleep"]

T = TypeVar("T")

ASYNC = True  # the generator turns ``if ASYNC:`` blocks into their ``else`` branch
RLock = threading.RLock  # sync twin of ANoLock: pool code re-enters it (drop inside acquire)
sleep = time.sleep
isawaitable = inspect.isawaitable


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class ANoLock:
    """The async face runs on one loop thread: its shared state needs no lock."""

    __slots__ = ()

    def __enter__(self) -> ANoLock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


_WAITING, _SET, _ABANDONED = 0, 1, 2


class AWaiter(Generic[T]):
    """A one-shot slot a pool hands an item to; the waiting task may time out or be cancelled."""

    __slots__ = ("_future", "deadline")

    def __init__(self) -> None:
        self._future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.deadline: float | None = None  # loop time a pool's timer fails it at, if any

    def set(self, value: T) -> bool:
        """Hand ``value`` over; False when the waiter already gave up."""
        if self._future.done():
            return False
        self._future.set_result(value)
        return True

    def fail(self, exc: BaseException) -> None:
        """Wake the waiter with ``exc`` (the pool is closing)."""
        if not self._future.done():
            self._future.set_exception(exc)

    def abandon(self) -> tuple[bool, Any]:
        """Give up waiting. Returns ``(True, value)`` if a value had already been handed over."""
        future = self._future
        if future.done():
            if not future.cancelled() and future.exception() is None:
                return True, future.result()
            return False, None
        future.cancel()
        return False, None

    def __await__(self) -> Generator[Any, None, T]:
        """``await waiter``: the handed-over value, awaited on the future with no frame between
        (a pool fails the waiter with ``TimeoutError`` at its deadline)."""
        return self._future.__await__()

    async def wait(self, timeout: float | None) -> T:
        """The handed-over value; ``TimeoutError`` after ``timeout`` seconds."""
        if timeout is None:
            return await self._future
        async with asyncio.timeout(timeout):
            return await self._future


class Waiter(Generic[T]):
    """Thread twin of ``AWaiter``."""

    __slots__ = ("_error", "_event", "_lock", "_state", "_value")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._state = _WAITING
        self._value: Any = None
        self._error: BaseException | None = None

    def set(self, value: T) -> bool:
        with self._lock:
            if self._state != _WAITING:
                return False
            self._value, self._state = value, _SET
        self._event.set()
        return True

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._state != _WAITING:
                return
            self._error, self._state = exc, _ABANDONED
        self._event.set()

    def abandon(self) -> tuple[bool, Any]:
        with self._lock:
            if self._state == _SET:
                return True, self._value
            self._state = _ABANDONED
            return False, None

    def wait(self, timeout: float | None) -> T:
        if not self._event.wait(timeout):
            got, value = self.abandon()
            if got:
                return value  # type: ignore[no-any-return]
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]
