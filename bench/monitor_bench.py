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


async def run_once(mode: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per switch of one busy run under ``mode``."""
    loop = asyncio.get_running_loop()
    threshold_ms = MODES[mode]
    monitor = LoopMonitor(threshold_ms=threshold_ms) if threshold_ms else None
    switches = SWITCHES // 10 if mode == "asyncio debug" else SWITCHES
    if mode == "asyncio debug":
        loop.set_debug(True)
    if monitor is not None:
        monitor.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        await busy(switches)
    finally:
        turns = TASKS * switches
        cpu, wall = (time.process_time() - cpu0) / turns, (time.perf_counter() - wall0) / turns
        if monitor is not None:
            monitor.stop()
        loop.set_debug(False)
    return cpu, wall


async def main(reps: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.reps))
