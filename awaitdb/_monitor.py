"""``LoopMonitor``: notice an event loop that stopped turning, and name the code that stopped it.

Two parts, one on each side of the GIL::

    loop thread:      beat ──(interval)──> beat ──(interval)──> beat     each beat records its lag
                                   │ a beat is late by more than threshold_ms: a stall
    watchdog thread:  wakes when the pending beat becomes overdue (about once per threshold)
                                    └── the loop is overdue: read the loop thread's stack NOW
                                        (``sys._current_frames``), while it is still stuck

When the late beat finally runs, the stall is recorded with the frame the watchdog saw and one
line is logged on the ``awaitdb`` logger: how long the loop was blocked and the innermost
application frame (asyncio, awaitdb, the standard library and installed packages are skipped).
The loop pays one timer callback per interval; the watchdog sleeps until the moment the loop
would be overdue, so it wakes about once per threshold while the loop is healthy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any

from ._errors import InterfaceError

__all__ = ["Blocker", "LoopMonitor", "LoopStats", "Stall", "describe_blocker"]

logger = logging.getLogger("awaitdb")

_RESERVOIR = 4096
_AWAITDB_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_stdlib_dirs: tuple[str, ...] | None = None  # computed on the first stall


def _stdlib() -> tuple[str, ...]:
    global _stdlib_dirs
    if _stdlib_dirs is None:
        import sysconfig

        paths = sysconfig.get_paths()
        _stdlib_dirs = tuple(
            {os.path.abspath(p) + os.sep for k in ("stdlib", "platstdlib") if (p := paths.get(k))}
        )
    return _stdlib_dirs


_LIBRARY_MARKERS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


@dataclass(frozen=True, slots=True)
class Blocker:
    """Where the loop thread was while it was stuck: the innermost application frame."""

    function: str
    filename: str
    lineno: int
    stack: tuple[str, ...] = ()  # the thread's frames, innermost first, ``function (file:line)``

    @property
    def where(self) -> str:
        return f"{self.function} ({self.filename}:{self.lineno})"


UNKNOWN = Blocker("<unknown: the stall ended before the watchdog looked>", "?", 0)


@dataclass(frozen=True, slots=True)
class Stall:
    """One stall: how long the loop did not turn, and what it was running."""

    duration_ms: float
    blocker: Blocker


@dataclass(frozen=True, slots=True)
class LoopStats:
    """Loop lag percentiles, stalls and the top blockers (``(where, count, total_ms)``)."""

    threshold_ms: float
    beats: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    stalls: int
    stalled_ms: float
    top_blockers: tuple[tuple[str, int, float], ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kind(filename: str) -> int:
    """0 application code, 1 an installed package, 2 awaitdb / the standard library / frozen."""
    if filename.startswith("<"):
        return 2
    path = os.path.abspath(filename)
    if path.startswith(_AWAITDB_DIR):
        return 2
    if any(marker in path for marker in _LIBRARY_MARKERS):
        return 1
    if path.startswith(_stdlib()):
        return 2
    return 0


def describe_blocker(frame: FrameType | None) -> Blocker:
    """The innermost application frame of a stack (else the innermost package frame)."""
    frames: list[FrameType] = []
    while frame is not None and len(frames) < 200:
        frames.append(frame)
        frame = frame.f_back
    if not frames:
        return UNKNOWN
    kinds = [_kind(f.f_code.co_filename) for f in frames]
    chosen = next((f for f, k in zip(frames, kinds, strict=True) if k == 0), None)
    if chosen is None:
        chosen = next((f for f, k in zip(frames, kinds, strict=True) if k == 1), frames[0])
    stack = tuple(
        f"{f.f_code.co_name} ({f.f_code.co_filename}:{f.f_lineno})"
        for f, k in zip(frames, kinds, strict=True)
        if k < 2
    )
    return Blocker(chosen.f_code.co_name, chosen.f_code.co_filename, chosen.f_lineno or 0, stack)


def _percentile_ms(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    return round(samples[min(len(samples) - 1, round(q * (len(samples) - 1)))] * 1000.0, 3)


class LoopMonitor:
    """A watchdog that logs one line per loop stall longer than ``threshold_ms``, naming the
    blocking frame; ``async with LoopMonitor(): ...`` or ``start()``/``stop()``."""

    def __init__(
        self,
        threshold_ms: float = 100.0,
        *,
        interval_ms: float | None = None,
        log: bool = True,
        keep: int = 1000,
    ) -> None:
        if not isinstance(threshold_ms, int | float) or threshold_ms <= 0:
            raise InterfaceError(f"threshold_ms must be a positive number, not {threshold_ms!r}")
        if interval_ms is not None and (
            not isinstance(interval_ms, int | float) or interval_ms <= 0
        ):
            raise InterfaceError(f"interval_ms must be a positive number, not {interval_ms!r}")
        self.threshold_ms = float(threshold_ms)
        self._threshold = threshold_ms / 1000.0
        self._interval = (interval_ms if interval_ms else min(threshold_ms / 2, 20.0)) / 1000.0
        self._tick = max(0.002, min(self._threshold / 4, 0.05))
        self._log = log
        self._lags: deque[float] = deque(maxlen=_RESERVOIR)
        self._late: deque[tuple[float, float]] = deque()  # (expected, lag) of late beats
        self.stalls: deque[Stall] = deque(maxlen=keep)
        self._blockers: dict[str, list[float]] = {}
        self._stall_count = 0
        self._stalled = 0.0
        self._beats = 0
        self._lock = threading.Lock()
        self._pending: tuple[float, Blocker] | None = None
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._expected = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the watchdog runs: started, not stopped, and its loop not closed."""
        return self._thread is not None and self._thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LoopMonitor:
        """Watch the running loop (call it from the loop's thread)."""
        if self.running:
            raise InterfaceError("this LoopMonitor is already running")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InterfaceError(
                "LoopMonitor.start() must be called inside a running loop"
            ) from None
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._expected = time.perf_counter() + self._interval
        self._handle = loop.call_later(self._interval, self._beat)
        self._thread = threading.Thread(target=self._watch, name="loop-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching; stalls already seen stay in ``stats()`` and ``stalls``."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        thread.join()
        self.collect()

    async def __aenter__(self) -> LoopMonitor:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the loop side ---------------------------------------------------------------------------

    def _beat(self) -> None:
        now = time.perf_counter()
        expected = self._expected
        if self._paused:  # the loop was stopped (run_until_complete ended): not a stall
            self._paused = False
        else:
            lag = now - expected
            self._lags.append(lag)
            if lag > self._threshold:
                self._late.append((expected, lag))
        self._beats += 1
        self._expected = now + self._interval
        loop = self._loop
        if loop is not None and self._thread is not None:
            self._handle = loop.call_later(self._interval, self._beat)

    # -- the watchdog side -----------------------------------------------------------------------

    def _next_wait(self, loop: asyncio.AbstractEventLoop) -> float:
        """Sleep until the pending beat would become overdue (plus 1 ms), so a healthy loop
        costs about one watchdog wake-up per threshold; poll slower while stopped or stuck."""
        if not loop.is_running():
            return self._tick
        pending = self._pending
        if pending is not None and pending[0] == self._expected:
            return self._tick  # already captured this stall: wait for it to end
        overdue_at = self._expected + self._threshold + 0.001
        return max(0.001, overdue_at - time.perf_counter())

    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stop.wait(self._next_wait(loop)):
            if loop.is_closed():  # its loop is gone without stop(): nothing left to watch
                break
            if not loop.is_running():
                self._paused = True
                self._pending = None
                continue
            expected = self._expected
            if time.perf_counter() - expected > self._threshold and (
                self._pending is None or self._pending[0] != expected
            ):
                frame = sys._current_frames().get(self._loop_thread)
                blocker = describe_blocker(frame)
                del frame
                if loop.is_running() and expected == self._expected:
                    self._pending = (expected, blocker)
            if self._late:
                self.collect()

    def collect(self) -> list[Stall]:
        """Record (and log) the stalls whose late beat has run; returns them. Thread-safe."""
        found: list[Stall] = []
        with self._lock:
            while self._late:
                expected, lag = self._late.popleft()
                pending = self._pending
                if pending is not None and pending[0] == expected:
                    blocker = pending[1]
                    self._pending = None
                else:
                    blocker = UNKNOWN
                stall = Stall(round(lag * 1000.0, 1), blocker)
                found.append(stall)
                self.stalls.append(stall)
                self._stall_count += 1
                self._stalled += lag
                entry = self._blockers.setdefault(blocker.where, [0, 0.0])
                entry[0] += 1
                entry[1] += lag * 1000.0
        if self._log:
            for stall in found:
                logger.warning(
                    "event loop blocked for %.1f ms in %s",
                    stall.duration_ms,
                    stall.blocker.where,
                )
        return found

    # -- figures ---------------------------------------------------------------------------------

    def stats(self, top: int = 5) -> LoopStats:
        """Lag percentiles (from every beat), stall count and time, the ``top`` blockers."""
        self.collect()
        lags = sorted(self._lags)
        with self._lock:
            blockers = sorted(self._blockers.items(), key=lambda item: -item[1][1])[:top]
            return LoopStats(
                threshold_ms=self.threshold_ms,
                beats=self._beats,
                lag_p50_ms=_percentile_ms(lags, 0.5),
                lag_p99_ms=_percentile_ms(lags, 0.99),
                lag_max_ms=round(max(lags, default=0.0) * 1000.0, 3),
                stalls=self._stall_count,
                stalled_ms=round(self._stalled * 1000.0, 1),
                top_blockers=tuple((w, int(c), round(ms, 1)) for w, (c, ms) in blockers),
            )
