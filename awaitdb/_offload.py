"""Off-loop work: run blocking functions on a bounded thread pool without blocking the loop.

``await offload(fn, *args, timeout=None, **kwargs)`` runs ``fn`` on the shared default pool;
``@off_loop`` turns a plain function into an awaitable one; ``Offloader`` is a pool of its own
(size and queue limit chosen by the caller). A call moves through these states::

    submitted ──> queued ──> running ──> done (returned or raised)
        │            │           │
        │            │           └── caller timed out / cancelled: returns at once, the thread
        │            │               finishes the call and it is counted as ``abandoned``
        │            └── caller timed out / cancelled: the call never runs
        └── more than ``max_queue`` calls already queued: ``Overloaded`` at once

Context variables are copied into the thread, as ``asyncio.to_thread`` does. Queue wait and run
time are recorded per call and summarised by ``stats()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, ParamSpec, TypeVar, overload

from ._errors import InterfaceError, Overloaded

__all__ = ["OffloadStats", "Offloader", "default_offloader", "off_loop", "offload"]

P = ParamSpec("P")
T = TypeVar("T")

_RESERVOIR = 2048


def _percentile_ms(samples: deque[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000.0, 3)


@dataclass(frozen=True, slots=True)
class OffloadStats:
    """A point-in-time copy of an ``Offloader``'s counters. Times are in milliseconds."""

    max_workers: int
    max_queue: int
    queued: int
    running: int
    calls: int
    completed: int
    failed: int
    overloaded: int
    timeouts: int
    cancelled: int
    abandoned: int
    queue_wait_p50_ms: float
    queue_wait_p99_ms: float
    queue_wait_max_ms: float
    run_p50_ms: float
    run_p99_ms: float
    run_max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Offloader:
    """A bounded thread pool for blocking calls: ``await pool.run(fn, *args, timeout=...)``.

    At most ``max_workers`` calls run at once and at most ``max_queue`` wait; a call beyond
    that fails at once with ``Overloaded`` instead of growing an unbounded backlog.
    """

    def __init__(
        self, max_workers: int | None = None, max_queue: int = 1000, *, name: str = "pool"
    ) -> None:
        if max_workers is None:
            max_workers = min(32, (os.cpu_count() or 1) + 4)
        if type(max_workers) is not int or max_workers < 1:
            raise InterfaceError(f"max_workers must be a positive integer, not {max_workers!r}")
        if type(max_queue) is not int or max_queue < 0:
            raise InterfaceError(f"max_queue must be zero or a positive integer, not {max_queue!r}")
        self.max_workers = max_workers
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix=f"offload-{name}")
        self._lock = threading.Lock()
        self._queued = 0
        self._running = 0
        self._calls = 0
        self._completed = 0
        self._failed = 0
        self._overloaded = 0
        self._timeouts = 0
        self._cancelled = 0
        self._abandoned = 0
        self._waits: deque[float] = deque(maxlen=_RESERVOIR)
        self._runs: deque[float] = deque(maxlen=_RESERVOIR)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Offloader workers={self.max_workers} queue={self.max_queue}>"

    # -- running ---------------------------------------------------------------------------------

    async def run(
        self, fn: Callable[..., T], /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on a pool thread; ``TimeoutError`` after ``timeout`` s."""
        if not callable(fn):
            raise InterfaceError(f"offload needs a callable, not {type(fn).__name__}")
        _refuse_async(fn)
        if timeout is not None and timeout <= 0:
            raise InterfaceError(f"timeout must be positive, not {timeout!r}")
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise InterfaceError("this offloader is closed")
            busy = self._queued + self._running
            if busy >= self.max_workers and self._queued >= self.max_queue:
                self._overloaded += 1
                raise Overloaded(
                    f"off-loop pool overloaded: {self._running} running, {self._queued} queued "
                    f"(max_workers={self.max_workers}, max_queue={self.max_queue})"
                )
            self._queued += 1
            self._calls += 1
        context = contextvars.copy_context()
        started: list[bool] = []
        try:
            cfuture: Future[T] = self._executor.submit(
                self._call, started, time.perf_counter(), context, fn, args, kwargs
            )
        except RuntimeError as exc:  # the executor was shut down under us
            with self._lock:
                self._queued -= 1
            raise InterfaceError(f"this offloader is closed ({exc})") from None
        cfuture.add_done_callback(self._never_ran)
        future = asyncio.wrap_future(cfuture, loop=loop)
        try:
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._gave_up(started, timed_out=True)
            raise TimeoutError(
                f"{getattr(fn, '__qualname__', fn)!s} did not finish within {timeout} s"
            ) from None
        except asyncio.CancelledError:
            self._gave_up(started, timed_out=False)
            raise

    def _call(
        self,
        started: list[bool],
        submitted: float,
        context: contextvars.Context,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        begin = time.perf_counter()
        with self._lock:
            started.append(True)
            self._queued -= 1
            self._running += 1
            self._waits.append(begin - submitted)
        failed = True
        try:
            try:
                result = context.run(fn, *args, **kwargs)
            except StopIteration as exc:  # an asyncio future refuses it: the caller never woke
                raise RuntimeError(f"{_name(fn)} raised StopIteration") from exc
            if inspect.iscoroutine(result):
                result.close()  # never awaited: close it rather than hand back a dead coroutine
                raise InterfaceError(
                    f"{_name(fn)} returned a coroutine: await async functions, do not offload them"
                )
            failed = False
            return result
        finally:
            elapsed = time.perf_counter() - begin
            with self._lock:
                self._running -= 1
                self._runs.append(elapsed)
                if failed:
                    self._failed += 1
                else:
                    self._completed += 1

    def _never_ran(self, cfuture: Future[Any]) -> None:
        if cfuture.cancelled():  # cancelled while still queued: it never started
            with self._lock:
                self._queued -= 1

    def _gave_up(self, started: list[bool], *, timed_out: bool) -> None:
        with self._lock:
            if timed_out:
                self._timeouts += 1
            else:
                self._cancelled += 1
            if started:
                self._abandoned += 1

    def off_loop(self, fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
        """Decorate a plain function so that calling it awaits it on this pool."""
        return _wrap(self, fn, None)

    # -- state -----------------------------------------------------------------------------------

    def stats(self) -> OffloadStats:
        """Queue and run counters, and queue-wait and run-time percentiles."""
        with self._lock:
            waits, runs = deque(self._waits), deque(self._runs)
            return OffloadStats(
                max_workers=self.max_workers,
                max_queue=self.max_queue,
                queued=self._queued,
                running=self._running,
                calls=self._calls,
                completed=self._completed,
                failed=self._failed,
                overloaded=self._overloaded,
                timeouts=self._timeouts,
                cancelled=self._cancelled,
                abandoned=self._abandoned,
                queue_wait_p50_ms=_percentile_ms(waits, 0.5),
                queue_wait_p99_ms=_percentile_ms(waits, 0.99),
                queue_wait_max_ms=round(max(waits, default=0.0) * 1000.0, 3),
                run_p50_ms=_percentile_ms(runs, 0.5),
                run_p99_ms=_percentile_ms(runs, 0.99),
                run_max_ms=round(max(runs, default=0.0) * 1000.0, 3),
            )

    def close(self, wait: bool = True) -> None:
        """Refuse new calls; with ``wait`` block until running calls finish (not on the loop)."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=wait, cancel_futures=True)

    async def aclose(self) -> None:
        """Refuse new calls and wait, off the loop, for the running ones to finish."""
        with self._lock:
            self._closed = True
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)

    async def __aenter__(self) -> Offloader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_default: Offloader | None = None
_default_lock = threading.Lock()


def default_offloader() -> Offloader:
    """The shared pool ``offload`` and ``@off_loop`` use (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Offloader(name="default")
    return _default


async def offload(
    fn: Callable[..., T], /, *args: Any, timeout: float | None = None, **kwargs: Any
) -> T:
    """Run a blocking ``fn(*args, **kwargs)`` on the shared bounded pool and await its result."""
    return await default_offloader().run(fn, *args, timeout=timeout, **kwargs)


def _name(fn: Any) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return str(getattr(fn, "__qualname__", None) or fn)


def _refuse_async(fn: Any) -> None:
    """Refuse a coroutine function: off-loading it would only create an un-awaited coroutine."""
    if inspect.iscoroutinefunction(fn) or (
        isinstance(fn, functools.partial) and inspect.iscoroutinefunction(fn.func)
    ):
        raise InterfaceError(f"{_name(fn)} is async: await it, offload is for plain functions")


def _wrap(
    pool: Offloader | None, fn: Callable[P, T], timeout: float | None
) -> Callable[P, Awaitable[T]]:
    if inspect.iscoroutinefunction(fn):
        raise InterfaceError(f"{fn.__qualname__} is already async: off_loop is for plain functions")

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        target = pool if pool is not None else default_offloader()
        return await target.run(functools.partial(fn, *args, **kwargs), timeout=timeout)

    return call


@overload
def off_loop(fn: Callable[P, T], /) -> Callable[P, Awaitable[T]]: ...
@overload
def off_loop(
    *, timeout: float | None = None, pool: Offloader | None = None
) -> Callable[[Callable[P, T]], Callable[P, Awaitable[T]]]: ...
def off_loop(
    fn: Callable[P, T] | None = None,
    /,
    *,
    timeout: float | None = None,
    pool: Offloader | None = None,
) -> Any:
    """Make a blocking function awaitable on a bounded pool: ``@off_loop`` or
    ``@off_loop(timeout=5, pool=my_pool)``."""
    if fn is not None:
        return _wrap(pool, fn, timeout)

    def decorate(inner: Callable[P, T]) -> Callable[P, Awaitable[T]]:
        return _wrap(pool, inner, timeout)

    return decorate
