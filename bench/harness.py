"""Shared benchmark machinery: interleaved repetitions, medians, CPU us/op, loop lag."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Ticker:
    """Measures event-loop lag: how late a 1 ms sleep wakes up."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.samples.append(time.perf_counter() - start - 0.001)

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def p99_ms(self) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000


async def gather_split(fn: Callable[[int], Awaitable[Any]], keys: list[int], tasks: int) -> None:
    """Run ``fn(key)`` for every key from ``tasks`` concurrent tasks, each taking a slice."""

    async def worker(chunk: list[int]) -> None:
        for key in chunk:
            await fn(key)

    await asyncio.gather(*(worker(keys[k::tasks]) for k in range(tasks)))


async def measure(run: Callable[[], Awaitable[None]], ops: int, lag: bool) -> dict[str, float]:
    """ops/s, CPU us/op and (optionally) loop-lag p99 of one run."""
    ticker = Ticker()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if lag:
        with ticker:
            await run()
    else:
        await run()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {"ops": ops / wall, "cpu_us": cpu / ops * 1e6, "lag": ticker.p99_ms() if lag else 0.0}


async def interleave(
    contenders: dict[str, tuple[Callable[[], Awaitable[None]], int, bool]], reps: int
) -> dict[str, dict[str, float]]:
    """Warm every contender, then run them round-robin ``reps`` times; return medians."""
    names = list(contenders)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:
        await contenders[name][0]()
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            workload, count, lag = contenders[name]
            results[name].append(await measure(workload, count, lag))
    return {
        name: {k: statistics.median(r[k] for r in results[name]) for k in ("ops", "cpu_us", "lag")}
        for name in names
    }
