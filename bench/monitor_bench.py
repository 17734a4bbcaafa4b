"""L1: what the LoopMonitor costs a busy event loop, beside asyncio debug mode.

A busy loop: 200 tasks that each switch 1,500 times, doing a little work and starting a short
task every tenth switch (about a second of CPU a run). Contenders run interleaved in one
process, medians of repetitions: no monitor, ``LoopMonitor`` at 100 ms and at 20 ms (a beat
every 10 ms, a watchdog tick every 5 ms), and asyncio's debug mode (on a tenth of the work, it is
that slow; compare CPU per switch). CPU is process-wide (``time.process_time``), so the
watchdog thread is counted.

    .venv/bin/python bench/monitor_bench.py [--reps 7]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from awaitdb import LoopMonitor

TASKS, SWITCHES = 200, 1500


async def child(data: bytes) -> bytes:
    await asyncio.sleep(0)
    return hashlib.blake2b(data, digest_size=8).digest()


async def worker(seed: int, switches: int) -> None:
    data = seed.to_bytes(8, "little")
    for i in range(switches):
        data = hashlib.blake2b(data, digest_size=16).digest()
        if i % 10 == 0:
            data = await asyncio.create_task(child(data))
        else:
            await asyncio.sleep(0)


async def busy(switches: int) -> None:
    await asyncio.gather(*(worker(seed, switches) for seed in range(TASKS)))


MODES = {"none": None, "monitor 100 ms": 100.0, "monitor 20 ms": 20.0, "asyncio debug": None}


INTRINSIC: dict[str, list[float]] = {}  # mode -> the monitor's own CPU share per busy run


def beat_cost_us() -> float:
    """CPU us of one beat on a busy loop: the callback's body plus scheduling the next one."""
    monitor = LoopMonitor()
    loop = asyncio.new_event_loop()
    try:
        monitor._loop = loop
        n = 20_000
        cpu0 = time.process_time()
        for _ in range(n):
            monitor._beat()  # the body (it reschedules only while running)
            loop.call_later(0.02, monitor._beat).cancel()  # plus the timer it schedules
        return (time.process_time() - cpu0) / n * 1e6
    finally:
        loop.close()


async def run_once(mode: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per switch of one busy run under ``mode``."""
    loop = asyncio.get_running_loop()
    threshold_ms = MODES[mode]
    monitor = LoopMonitor(threshold_ms=threshold_ms) if threshold_ms else None
    switches = SWITCHES // 10 if mode == "asyncio debug" else SWITCHES
    if mode == "asyncio debug":
        loop.set_debug(True)
    clock = None
    if monitor is not None:
        monitor.start()
        assert monitor._thread is not None and monitor._thread.ident is not None
        clock = time.pthread_getcpuclockid(monitor._thread.ident)
        watchdog0 = time.clock_gettime(clock)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await busy(switches)
    finally:
        turns = TASKS * switches
        total_cpu = time.process_time() - cpu0
        cpu, wall = total_cpu / turns, (time.perf_counter() - wall0) / turns
        if monitor is not None and clock is not None:
            watchdog = time.clock_gettime(clock) - watchdog0
            beats = monitor.stats().beats * BEAT_US[0] / 1e6
            INTRINSIC.setdefault(mode, []).append((watchdog + beats) / total_cpu * 100)
            monitor.stop()
        loop.set_debug(False)
    return cpu, wall


BEAT_US = [0.0]


async def idle_cost(threshold_ms: float, seconds: float = 2.0) -> float:
    """CPU ms per second the monitor alone costs: beats and watchdog ticks on an idle loop
    (their wake-ups included), minus the same idle loop without it. Noise-robust, absolute."""

    async def cpu_per_second(monitor: LoopMonitor | None) -> float:
        if monitor is not None:
            monitor.start()
        cpu0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        if monitor is not None:
            monitor.stop()
        return cpu / seconds * 1000.0

    base = await cpu_per_second(None)
    return max(0.0, await cpu_per_second(LoopMonitor(threshold_ms=threshold_ms)) - base)


async def main(reps: int) -> None:
    BEAT_US[0] = beat_cost_us()
    modes = list(MODES)
    results: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for mode in modes:  # warm-up
        await run_once(mode)
    for rep in range(reps):
        for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
            results[mode].append(await run_once(mode))
    base = statistics.median(c for c, _ in results["none"])
    print(f"L1 busy loop: {TASKS} tasks x {SWITCHES} switches, {reps} interleaved reps (medians)")
    print(f"{'mode':<18}{'CPU us/switch':>15}{'wall us/switch':>16}{'CPU vs none':>13}")
    for mode in modes:
        cpu = statistics.median(c for c, _ in results[mode])
        wall = statistics.median(w for _, w in results[mode])
        ratio = (
            f"{cpu / base:.1f} x" if mode == "asyncio debug" else f"{(cpu / base - 1) * 100:+.1f} %"
        )
        print(f"{mode:<18}{cpu * 1e6:>15.3f}{wall * 1e6:>16.3f}{ratio:>13}")
    for mode in ("monitor 100 ms", "monitor 20 ms"):
        paired = sorted(
            (m[0] / n[0] - 1) * 100 for m, n in zip(results[mode], results["none"], strict=True)
        )
        figures = ", ".join(f"{p:+.1f}%" for p in paired)
        print(f"{mode} CPU overhead per rep (paired, sorted): {figures}")
    for mode in ("monitor 100 ms", "monitor 20 ms"):
        shares = sorted(INTRINSIC[mode])
        print(
            f"{mode} intrinsic cost on the busy loop (watchdog thread CPU + beats x "
            f"{BEAT_US[0]:.1f} us), % of the run's CPU: median {statistics.median(shares):.3f} %, "
            f"max {shares[-1]:.3f} %"
        )
    for threshold in (100.0, 20.0):
        cost = await idle_cost(threshold)
        print(
            f"monitor {threshold:g} ms alone on an idle loop: {cost:.2f} ms CPU per second "
            f"= {cost / 10:.3f} % of one core"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.reps))
