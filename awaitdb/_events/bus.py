"""``Bus``: an in-process event bus with wildcards, isolation, timeouts and transaction ties.

What ``emit`` does with one event::

    emit(name, data)
    ├── inside a transaction ────────────────── queued on the innermost block (the bound db's,
    │     │                                      or without a db the task's current one)
    │     ├── the outermost COMMIT ──────────── delivered in order by one tracked task, started
    │     │                                      before the block returns: listeners that do
    │     │                                      not suspend have run by then, others run on
    │     └── a rollback (savepoint included) ─ dropped, never delivered
    └── otherwise ───────────────────────────── delivered now: each listener awaited in turn
          ├── returns ─────────────────────── counted, timed
          ├── raises ──────────────────────── logged with its name, counted, in the report
          └── times out ───────────────────── the same, as a ``TimeoutError``

``emit_nowait`` does the same in a tracked task; ``aclose`` waits for every tracked task.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from .._async.transaction import Transaction
from .._current import current_transaction
from .._errors import InterfaceError
from .event import Event, check_name, check_pattern, check_seconds, pattern_prefix
from .offload import run_off_loop

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["Bus", "BusStats", "EmitReport", "ListenerFailure", "ListenerStats"]

logger = logging.getLogger("awaitdb.events")

F = TypeVar("F", bound=Callable[..., Any])

_ids = itertools.count(1)


class _BusTimeout(TimeoutError):
    """A listener ran past the bus's own timeout (a listener's own ``TimeoutError`` is not)."""


@dataclass
class ListenerStats:
    """Counters and timings of one listener."""

    name: str
    pattern: str
    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    total_s: float = 0.0
    max_s: float = 0.0


@dataclass(frozen=True)
class ListenerFailure:
    """A listener that raised or timed out on one event."""

    listener: str
    error: BaseException


@dataclass(slots=True)
class EmitReport:
    """What one ``emit`` did: listeners run, failures, or ``deferred`` until COMMIT."""

    event: Event
    delivered: int = 0
    failures: list[ListenerFailure] = field(default_factory=list)
    deferred: bool = False

    @property
    def ok(self) -> bool:
        """True when no listener failed."""
        return not self.failures

    @property
    def failed(self) -> list[str]:
        """The names of the listeners that failed."""
        return [f.listener for f in self.failures]


@dataclass
class BusStats:
    """A snapshot of a bus: events, failures and pending deliveries, per-listener stats."""

    emitted: int
    deferred: int
    dropped_on_rollback: int
    failures: int
    timeouts: int
    pending_tasks: int
    listeners: list[ListenerStats]


class _Listener:
    __slots__ = (
        "direct",
        "fn",
        "is_async",
        "name",
        "off_loop",
        "once",
        "pattern",
        "stats",
        "timeout",
    )

    def __init__(
        self,
        pattern: str,
        fn: Callable[..., Any],
        once: bool,
        off_loop: bool,
        timeout: float | None,
    ) -> None:
        self.pattern = pattern
        self.fn = fn
        self.once = once
        self.off_loop = off_loop
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
        module = getattr(fn, "__module__", None)
        qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        self.name = f"{module}.{qual}" if module else qual
        self.stats = ListenerStats(self.name, pattern)
        # A plain async listener: emit_nowait may run its coroutine as the task itself.
        self.direct = self.is_async and timeout is None and not off_loop


class Bus:
    """In-process events: ``on``/``once``/``off`` listeners, ``emit`` and ``emit_nowait``.

    Emits inside a transaction (the task's current one, or ``db``'s with ``Bus(db=db)``) are
    delivered after COMMIT and dropped on rollback.
    ``timeout`` is the default per-listener timeout in seconds.
    """

    def __init__(self, db: Database | None = None, *, timeout: float | None = None) -> None:
        if timeout is not None:
            timeout = check_seconds(timeout, "a listener timeout")
        self._db = db
        self._timeout = timeout
        self._listeners: list[_Listener] = []
        self._cache: dict[str, tuple[_Listener, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._delivering: dict[asyncio.Task[Any], Event] = {}  # for aclose's log lines
        self._after_commit: deque[Event] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[None] | None = None  # set when the last tracked task ends
        self._closed = False
        self._emitted = 0
        self._deferred = 0
        self._dropped = 0
        self._failures = 0
        self._timeouts = 0

    # -- listeners -------------------------------------------------------------------------------

    def on(
        self,
        pattern: str,
        listener: Callable[..., Any] | None = None,
        *,
        off_loop: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Call ``listener(event)`` for every event matching ``pattern``; also a decorator."""
        return self._add(pattern, listener, once=False, off_loop=off_loop, timeout=timeout)

    def once(
        self,
        pattern: str,
        listener: Callable[..., Any] | None = None,
        *,
        off_loop: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """Like ``on``, for the first matching event only."""
        return self._add(pattern, listener, once=True, off_loop=off_loop, timeout=timeout)

    def off(self, pattern: str, listener: Callable[..., Any] | None = None) -> int:
        """Remove ``listener`` from ``pattern``, or every listener of ``pattern`` if omitted.

        Returns how many registrations were removed (0 when there was none: not an error).
        """
        check_pattern(pattern)
        return self._remove(pattern, listener)

    def _add(
        self,
        pattern: str,
        listener: Callable[..., Any] | None,
        *,
        once: bool,
        off_loop: bool,
        timeout: float | None,
    ) -> Any:
        check_pattern(pattern)
        if timeout is not None:
            timeout = check_seconds(timeout, "a listener timeout")

        def register(fn: F) -> F:
            if not callable(fn):
                raise InterfaceError(f"a listener must be callable, not {type(fn).__name__}")
            entry = _Listener(pattern, fn, once, off_loop, timeout or self._timeout)
            if off_loop and entry.is_async:
                raise InterfaceError(
                    f"listener {entry.name} is async: off_loop=True is for blocking sync listeners"
                )
            self._listeners.append(entry)
            self._cache.clear()
            return fn

        if listener is None:
            return register
        return register(listener)

    def _remove(self, pattern: str, fn: Callable[..., Any] | None) -> int:
        keep = [
            entry
            for entry in self._listeners
            if entry.pattern != pattern or (fn is not None and entry.fn != fn)
        ]
        removed = len(self._listeners) - len(keep)
        self._listeners = keep
        self._cache.clear()
        return removed

    def _remove_entry(self, entry: _Listener) -> bool:
        if entry not in self._listeners:
            return False
        self._listeners.remove(entry)
        self._cache.clear()
        return True

    def listeners(self, name: str) -> list[Callable[..., Any]]:
        """The listeners an event called ``name`` would reach, in the order they run."""
        return [entry.fn for entry in self._matching(check_name(name))]

    def _matching(self, name: str) -> tuple[_Listener, ...]:
        found = self._cache.get(name)
        if found is None:
            selected = []
            for entry in self._listeners:
                text, prefix = pattern_prefix(entry.pattern)
                if name.startswith(text) if prefix else name == text:
                    selected.append(entry)
            found = self._cache[name] = tuple(selected)
        return found

    # -- emitting --------------------------------------------------------------------------------

    async def emit(self, name: str, data: Any = None, *, raise_errors: bool = False) -> EmitReport:
        """Deliver an event to its listeners, one after another, and report what failed.

        Inside a transaction (the bound db's, else the current one) the event is queued and
        delivered after COMMIT (the report says ``deferred``). With ``raise_errors=True`` the
        first failure is raised once every listener has run.
        """
        event = self._event(name, data)
        if self._defer(event):
            return EmitReport(event, deferred=True)
        report = await self.deliver(event)
        if raise_errors and report.failures:
            first = report.failures[0].error
            for other in report.failures[1:]:
                first.add_note(f"listener {other.listener} also failed: {other.error!r}")
            raise first
        return report

    def emit_nowait(self, name: str, data: Any = None) -> Event:
        """Schedule delivery in a tracked task (after COMMIT inside a transaction)."""
        event = self._event(name, data)
        if self._defer(event):
            return event
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise InterfaceError("emit_nowait() needs a running event loop") from None
        entries = self._matching(name)
        if len(entries) == 1 and entries[0].direct:
            # One plain async listener: its coroutine is the task (no wrapper coroutine);
            # the done callback does the accounting and the isolation.
            entry = entries[0]
            if entry.once:
                self._remove_entry(entry)
            start = time.perf_counter()
            try:
                coro = entry.fn(event)
            except Exception as exc:  # noqa: BLE001 - isolation, as in deliver()
                entry.stats.calls += 1
                self._failed(entry, event, exc, None)
                return event
            task = self._track(coro, event, done=False)
            task.add_done_callback(partial(self._direct_done, entry, event, start))
        elif entries:
            self._track(self.deliver(event), event)
        return event

    def _direct_done(
        self, entry: _Listener, event: Event, start: float, task: asyncio.Task[Any]
    ) -> None:
        self._task_done(task)
        stats = entry.stats
        elapsed = time.perf_counter() - start
        stats.calls += 1
        stats.total_s += elapsed
        stats.max_s = max(stats.max_s, elapsed)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Exception):
            self._failed(entry, event, exc, None)

    def _event(self, name: str, data: Any) -> Event:
        if self._closed:
            raise InterfaceError("the bus is closed")
        if name not in self._cache:
            check_name(name)
        self._emitted += 1
        return Event(name, data, next(_ids), time.time())

    def _defer(self, event: Event) -> bool:
        db = self._db
        # Bound to a db: that db's transaction; otherwise the task's innermost one, as the
        # core finds it (a sync-face transaction has no loop to deliver on: not deferred).
        current = db.current_transaction() if db is not None else current_transaction()
        if not isinstance(current, Transaction):
            return False
        tx = current
        self._deferred += 1
        tx.on_commit(lambda: self._committed(event))
        tx.on_rollback(self._rolled_back)
        return True

    def _committed(self, event: Event) -> Any:
        """An on_commit hook: queue the event for the ordered after-commit delivery task.

        Returns an awaitable the block awaits: one turn of the loop, so a delivery whose
        listeners never suspend has finished when the block returns; the rest runs on.
        """
        if self._closed:
            logger.error("bus closed before delivering %s (id %s)", event.name, event.id)
            return None
        self._after_commit.append(event)
        if self._drainer is None or self._drainer.done():
            self._drainer = self._track(self._drain(), event)
        return asyncio.sleep(0)

    def _rolled_back(self) -> None:
        self._dropped += 1

    async def _drain(self) -> None:
        queue = self._after_commit
        task = asyncio.current_task()
        while queue:
            event = queue.popleft()
            if task is not None:
                self._delivering[task] = event
            await self.deliver(event)

    def _track(self, coro: Any, event: Event, *, done: bool = True) -> asyncio.Task[Any]:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:
            coro.close()
            raise InterfaceError("emit_nowait() needs a running event loop") from None
        self._tasks.add(task)
        self._delivering[task] = event
        if done:
            task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        tasks = self._tasks
        tasks.discard(task)
        self._delivering.pop(task, None)
        if not tasks and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    async def deliver(self, event: Event) -> EmitReport:
        """Run the listeners of an already built ``event`` now (used by ``Stream.deliver_to``)."""
        report = EmitReport(event)
        for entry in self._matching(event.name):
            if entry.once and not self._remove_entry(entry):
                continue  # a concurrent delivery already used it
            stats = entry.stats
            start = time.perf_counter()
            try:
                if entry.off_loop:
                    result = await self._bounded(run_off_loop(entry.fn, event), entry.timeout)
                elif entry.timeout is None:
                    result = entry.fn(event)
                    if entry.is_async or inspect.isawaitable(result):
                        await result
                else:
                    result = entry.fn(event)
                    if entry.is_async or inspect.isawaitable(result):
                        await self._bounded(result, entry.timeout)
            except Exception as exc:  # noqa: BLE001 - isolation: logged, counted, reported
                self._failed(entry, event, exc, report)
            else:
                report.delivered += 1
            elapsed = time.perf_counter() - start
            stats.calls += 1
            stats.total_s += elapsed
            stats.max_s = max(stats.max_s, elapsed)
        return report

    @staticmethod
    async def _bounded(awaitable: Any, timeout: float | None) -> Any:
        if timeout is None:
            return await awaitable
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await awaitable
        except TimeoutError as exc:
            if deadline.expired():  # ours, not one the listener raised itself
                raise _BusTimeout(f"listener timed out after {timeout:g}s") from exc
            raise

    def _failed(
        self, entry: _Listener, event: Event, exc: BaseException, report: EmitReport | None
    ) -> None:
        stats = entry.stats
        stats.failures += 1
        self._failures += 1
        if isinstance(exc, _BusTimeout):
            stats.timeouts += 1
            self._timeouts += 1
            logger.error(
                "event listener %s timed out after %gs on %s (id %s)",
                entry.name,
                entry.timeout,
                event.name,
                event.id,
            )
        else:
            logger.error(
                "event listener %s failed on %s (id %s)",
                entry.name,
                event.name,
                event.id,
                exc_info=exc,
            )
        if report is not None:
            report.failures.append(ListenerFailure(entry.name, exc))

    # -- state -----------------------------------------------------------------------------------

    def stats(self) -> BusStats:
        """Counters of the bus and of each listener still registered."""
        return BusStats(
            emitted=self._emitted,
            deferred=self._deferred,
            dropped_on_rollback=self._dropped,
            failures=self._failures,
            timeouts=self._timeouts,
            pending_tasks=len(self._tasks),
            listeners=[entry.stats for entry in self._listeners],
        )

    async def drain(self) -> None:
        """Wait until every delivery scheduled so far has finished."""
        while self._tasks:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)  # shielded: a timeout never cancels deliveries

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Refuse new events, wait for scheduled deliveries up to ``timeout``, log any cut short."""
        self._closed = True
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(timeout):
                await self.drain()
        except TimeoutError:
            pending = list(self._tasks)
            for task in pending:
                event = self._delivering.get(task)
                logger.error(
                    "bus closing: delivery of %s (id %s) still running after %ss; cancelled",
                    event.name if event else "?",
                    event.id if event else "?",
                    timeout,
                )
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._after_commit:
            for event in self._after_commit:
                logger.error("bus closed before delivering %s (id %s)", event.name, event.id)
            self._after_commit.clear()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Bus {len(self._listeners)} listeners, {len(self._tasks)} pending>"
