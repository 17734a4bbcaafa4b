"""Counters and latency reservoirs behind ``db.stats()``, and the slow-query log.

Recording is a few attribute updates and one bounded ``deque.append`` per event, cheap enough
for every query; percentiles are computed only when ``stats()`` is called.

Query times measure execution only: the time a call spent waiting for a connection (or opening
one) is noted by the pool in a context variable of the calling task or thread
(``note_acquire_wait``) and subtracted, and it is reported apart, in ``acquire_wait_*`` and in
the slow-query log line. A call that never ran (``PoolTimeout``, ``PoolOverloaded``) is neither
timed nor logged as slow.
"""

from __future__ import annotations

import logging
from collections import deque
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from ._sql import short_sql

__all__ = ["Stats", "StatsSnapshot", "acquire_waited", "logger", "note_acquire_wait"]

logger = logging.getLogger("awaitdb")

_RESERVOIR = 2048

# Seconds the current task (or thread) has spent waiting for connections, ever: a statement
# subtracts the growth during its own call from its execution time.
_WAITED: ContextVar[float] = ContextVar("awaitdb_acquire_waited", default=0.0)
acquire_waited = _WAITED.get


def note_acquire_wait(seconds: float) -> None:
    """Add ``seconds`` spent waiting for (or opening) a connection to this task's total."""
    _WAITED.set(_WAITED.get() + seconds)


def _percentile(samples: deque[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000.0, 3)


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A point-in-time copy of the pool and query counters. Times are in milliseconds."""

    backend: str
    pool_size: int
    pool_max_size: int
    pool_idle: int
    pool_in_use: int
    pool_waiting: int
    acquisitions: int
    acquire_timeouts: int
    acquire_overloads: int
    connection_errors: int
    connections_replaced: int
    acquire_wait_p50_ms: float
    acquire_wait_p99_ms: float
    queries: int
    query_errors: int
    query_p50_ms: float
    query_p99_ms: float
    slow_queries: int
    group_commits: int
    grouped_writes: int
    inline_reads: int
    retries: int = 0  # transactions re-run by run_in_transaction after a TransientError

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stats:
    """Mutable counters shared by a database, its pool and its backend."""

    __slots__ = (
        "acquire_overloads",
        "acquire_timeouts",
        "acquire_waits",
        "acquisitions",
        "connection_errors",
        "connections_replaced",
        "group_commits",
        "grouped_writes",
        "inline_reads",
        "queries",
        "query_errors",
        "query_times",
        "retries",
        "slow_queries",
        "slow_query_s",
    )

    def __init__(self, slow_query_ms: float | None = None) -> None:
        self.queries = 0
        self.query_errors = 0
        self.slow_queries = 0
        self.query_times: deque[float] = deque(maxlen=_RESERVOIR)
        self.acquisitions = 0
        self.acquire_timeouts = 0
        self.acquire_overloads = 0
        self.acquire_waits: deque[float] = deque(maxlen=_RESERVOIR)
        self.connection_errors = 0
        self.connections_replaced = 0
        self.group_commits = 0
        self.grouped_writes = 0
        self.inline_reads = 0
        self.retries = 0
        self.slow_query_s = None if slow_query_ms is None else slow_query_ms / 1000.0

    def query_done(
        self,
        sql: str,
        seconds: float,
        failed: bool,
        *,
        counted: bool = False,
        waited: float = 0.0,
    ) -> None:
        """Count one finished statement (unless ``counted``) and log it when it was slow.

        ``seconds`` is execution time only; ``waited`` the connection wait, shown apart.
        """
        if not counted:
            self.queries += 1
            self.query_times.append(seconds)
        if failed:
            self.query_errors += 1
        limit = self.slow_query_s
        if limit is not None and seconds >= limit:
            self.slow_queries += 1
            if waited:
                logger.warning(
                    "slow query (%.1f ms, after waiting %.1f ms for a connection): %s",
                    seconds * 1000.0,
                    waited * 1000.0,
                    short_sql(sql, 200),
                )
            else:
                logger.warning("slow query (%.1f ms): %s", seconds * 1000.0, short_sql(sql, 200))

    def snapshot(self, backend: str, pool: dict[str, int]) -> StatsSnapshot:
        """Freeze the counters, adding the pool's gauges (size, idle, in use, waiting)."""
        return StatsSnapshot(
            backend=backend,
            pool_size=pool.get("size", 0),
            pool_max_size=pool.get("max_size", 0),
            pool_idle=pool.get("idle", 0),
            pool_in_use=pool.get("in_use", 0),
            pool_waiting=pool.get("waiting", 0),
            acquisitions=self.acquisitions,
            acquire_timeouts=self.acquire_timeouts,
            acquire_overloads=self.acquire_overloads,
            connection_errors=self.connection_errors,
            connections_replaced=self.connections_replaced,
            acquire_wait_p50_ms=_percentile(self.acquire_waits, 0.50),
            acquire_wait_p99_ms=_percentile(self.acquire_waits, 0.99),
            queries=self.queries,
            query_errors=self.query_errors,
            query_p50_ms=_percentile(self.query_times, 0.50),
            query_p99_ms=_percentile(self.query_times, 0.99),
            slow_queries=self.slow_queries,
            group_commits=self.group_commits,
            grouped_writes=self.grouped_writes,
            inline_reads=self.inline_reads,
            retries=self.retries,
        )
