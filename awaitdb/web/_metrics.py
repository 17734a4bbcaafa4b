"""``metrics_app()``: Prometheus text format through ``prometheus-client``.

Every figure is read at scrape time from what awaitdb already counts, so serving metrics adds
nothing to a query's path::

    awaitdb_pool_connections{state}        idle / in_use / waiting, and size / max_size
    awaitdb_queries_total ...              statements, errors, acquisitions, timeouts
    awaitdb_query_seconds (histogram)      statement latency   } built from the latency
    awaitdb_acquire_seconds (histogram)    connection wait     } reservoirs, see below
    awaitdb_errors_total{class}            awaitdb errors seen by the request dependencies
    awaitdb_loop_lag_seconds{quantile}     loop lag, stalls and stalled time (LoopMonitor)
    awaitdb_offload_*                      off-loop pool: queued, running, calls, overloads
    awaitdb_jobs{queue,status}             duck-typed: a worker/queue whose stats() has
    awaitdb_stream_lag{stream,group}       ``by_status`` / ``lag`` mappings

The histograms are cumulative: each scrape adds the statements run since the previous one,
taken from the database's latency reservoir (the last 2,048 samples). When more statements ran
between two scrapes than the reservoir holds, ``_count`` and ``_sum`` stay exact in count and
the bucket shares are those of the newest 2,048 samples.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .._offload import default_offloader
from ._runtime import Runtime, runtime_of

__all__ = ["Histogram", "MetricsApp", "metrics_app"]

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Cumulative buckets fed from a bounded reservoir and the exact total count."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0.0] * (len(buckets) + 1)
        self.total = 0
        self.sum = 0.0

    def update(self, total: int, samples: deque[float]) -> None:
        new = total - self.total
        if new <= 0:
            self.total = max(self.total, total)
            return
        taken = list(samples)[-new:] if samples else []
        scale = new / len(taken) if taken else 0.0
        for value in taken:
            index = next((i for i, b in enumerate(self.buckets) if value <= b), len(self.buckets))
            self.counts[index] += scale
            self.sum += value * scale
        self.total = total

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative, running = [], 0.0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=self.sum)


async def _maybe(call: Callable[[], Any]) -> Any:
    result = call()
    if inspect.isawaitable(result):
        result = await asyncio.wait_for(_as_coroutine(result), 2.0)
    return result


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _mapping(value: Any, name: str) -> dict[str, Any] | None:
    found = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    if isinstance(found, dict):
        return dict(found)
    if name == "lag":  # a stream's stats: ``groups``, each with ``group`` and ``lag``
        groups = value.get("groups") if isinstance(value, dict) else getattr(value, "groups", None)
        if isinstance(groups, list | tuple):
            lags = {
                str(getattr(g, "group", "?")): getattr(g, "lag", None)
                for g in groups
                if isinstance(getattr(g, "lag", None), int | float)
            }
            return lags or None
    return None


async def _service_figures(runtime: Runtime) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, {"by_status": ..., "lag": ...}) for each service, or its ``queue`` or
    ``queues``, whose ``stats()`` returns such mappings (named by its ``name``)."""
    figures = []
    for service in runtime.services:
        obj = service.obj
        targets = [
            obj,
            getattr(obj, "queue", None),
            getattr(obj, "stream", None),
            *list(getattr(obj, "queues", None) or ()),
        ]
        for target in targets:
            stats = getattr(target, "stats", None)
            if not callable(stats):
                continue
            try:
                value = await _maybe(stats)
            except Exception:  # noqa: BLE001 - a failing stats() must not break the scrape
                continue
            found = {k: m for k in ("by_status", "lag") if (m := _mapping(value, k)) is not None}
            if found:
                name = getattr(target, "name", None)
                figures.append((service.kind, str(name or service.name), found))
    return figures


class _Snapshot:
    """The figures of one scrape, emitted by ``collect`` (prometheus-client's collector API)."""

    def __init__(self, runtime: Runtime, services: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.runtime = runtime
        self.services = services

    def collect(self) -> Iterator[Metric]:
        runtime = self.runtime
        db = runtime.db
        stats = db.stats()
        raw = db._stats
        label = [db.backend]
        pool = GaugeMetricFamily(
            "awaitdb_pool_connections", "Pool connections by state", labels=["backend", "state"]
        )
        for state, value in (
            ("idle", stats.pool_idle),
            ("in_use", stats.pool_in_use),
            ("waiting", stats.pool_waiting),
            ("size", stats.pool_size),
            ("max_size", stats.pool_max_size),
        ):
            pool.add_metric([*label, state], value)
        yield pool
        for name, doc, value in (
            ("queries", "Statements run", stats.queries),
            ("query_errors", "Statements that failed", stats.query_errors),
            ("slow_queries", "Statements slower than slow_query_ms", stats.slow_queries),
            ("acquisitions", "Connections lent by the pool", stats.acquisitions),
            (
                "acquire_timeouts",
                "Acquisitions that timed out (PoolTimeout)",
                stats.acquire_timeouts,
            ),
            ("acquire_overloads", "Acquisitions refused (PoolOverloaded)", stats.acquire_overloads),
            ("connection_errors", "Connections that failed", stats.connection_errors),
        ):
            counter = CounterMetricFamily(f"awaitdb_{name}", doc, labels=["backend"])
            counter.add_metric(label, value)
            yield counter
        histograms = runtime.metrics_state
        query = histograms.setdefault("query", Histogram())
        query.update(stats.queries, raw.query_times)
        yield query.family("awaitdb_query_seconds", "Statement latency (seconds)")
        acquire = histograms.setdefault("acquire", Histogram())
        acquire.update(stats.acquisitions, raw.acquire_waits)
        yield acquire.family("awaitdb_acquire_seconds", "Wait for a pooled connection (seconds)")
        errors = CounterMetricFamily(
            "awaitdb_errors", "awaitdb errors seen by request dependencies", labels=["class"]
        )
        for cls, count in sorted(runtime.errors.items()):
            errors.add_metric([cls], count)
        yield errors
        yield from self._loop()
        yield from self._offload()
        yield from self._services()

    def _loop(self) -> Iterator[Metric]:
        monitor = self.runtime.monitor
        if monitor is None:
            return
        loop = monitor.stats()
        lag = GaugeMetricFamily("awaitdb_loop_lag_seconds", "Event-loop lag", labels=["quantile"])
        for q, value in (
            ("0.5", loop.lag_p50_ms),
            ("0.99", loop.lag_p99_ms),
            ("1", loop.lag_max_ms),
        ):
            lag.add_metric([q], value / 1000.0)
        yield lag
        yield CounterMetricFamily(
            "awaitdb_loop_stalls", "Loop stalls beyond the threshold", value=loop.stalls
        )
        yield CounterMetricFamily(
            "awaitdb_loop_stalled_seconds",
            "Time the loop spent stalled",
            value=loop.stalled_ms / 1e3,
        )

    def _offload(self) -> Iterator[Metric]:
        off = default_offloader().stats()
        for name, doc, value in (
            ("queued", "Off-loop calls waiting for a thread", off.queued),
            ("running", "Off-loop calls running", off.running),
            ("queue_wait_p99_seconds", "Off-loop queue wait, p99", off.queue_wait_p99_ms / 1e3),
            ("run_p99_seconds", "Off-loop run time, p99", off.run_p99_ms / 1e3),
        ):
            yield GaugeMetricFamily(f"awaitdb_offload_{name}", doc, value=value)
        for name, doc, value in (
            ("calls", "Off-loop calls", off.calls),
            ("overloaded", "Off-loop calls refused (Overloaded)", off.overloaded),
            ("timeouts", "Off-loop calls whose caller timed out", off.timeouts),
            ("failed", "Off-loop calls that raised", off.failed),
        ):
            yield CounterMetricFamily(f"awaitdb_offload_{name}", doc, value=value)

    def _services(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("awaitdb_jobs", "Jobs by status", labels=["queue", "status"])
        lag = GaugeMetricFamily(
            "awaitdb_stream_lag", "Stream entries not yet handled", labels=["stream", "group"]
        )
        alive = GaugeMetricFamily(
            "awaitdb_service_up", "1 when a worker or consumer runs", labels=["kind", "name"]
        )
        for service in self.runtime.services:
            alive.add_metric([service.kind, service.name], 1.0 if service.alive() else 0.0)
        by_status: dict[tuple[str, str], float] = {}  # a queue seen twice is counted once
        lags: dict[tuple[str, str], float] = {}
        for _, name, found in self.services:
            for status, count in found.get("by_status", {}).items():
                by_status[(name, str(status))] = float(count)
            for group, count in found.get("lag", {}).items():
                lags[(name, str(group))] = float(count)
        for labels, value in sorted(by_status.items()):
            jobs.add_metric(list(labels), value)
        for labels, value in sorted(lags.items()):
            lag.add_metric(list(labels), value)
        yield from (jobs, lag, alive)


class MetricsApp:
    """The ASGI app ``metrics_app()`` returns (a class, so Starlette routes it as an app)."""

    def __init__(self, include_default_registry: bool) -> None:
        self.include_default_registry = include_default_registry

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        from starlette.requests import Request

        runtime = runtime_of(Request(scope, receive))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(runtime, await _service_figures(runtime)))
        body = generate_latest(registry)
        if self.include_default_registry:
            body += generate_latest(REGISTRY)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def metrics_app(*, include_default_registry: bool = True) -> MetricsApp:
    """An ASGI app serving the Prometheus text format: ``app.add_route("/metrics",
    metrics_app())`` (served at ``/metrics``) or ``app.mount("/metrics", metrics_app())``
    (served at ``/metrics/``, with a redirect from ``/metrics``).

    It reads the running lifespan's figures; with ``include_default_registry`` it appends
    prometheus-client's default registry (process metrics and the application's own).
    """
    return MetricsApp(include_default_registry)
