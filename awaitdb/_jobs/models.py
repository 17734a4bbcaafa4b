"""What the jobs API hands back: ``JobInfo``, ``QueueStats``, and the statuses a job moves through.

::

                 enqueue(delay=...)                      lease expired (worker lost)
                     │                               ┌───────────────────────────┐
                     ▼                               │                           │
    enqueue ──► queued ◄─(run_at reached)─ scheduled  │    exception / timeout    │
                 │   ▲                               │    with retries left:     │
       claimed   │   └── release (shutdown) ─────────┤    scheduled (backoff)    │
                 ▼                                   │                           │
              running ───────────────────────────────┘
                 │ ├──► done       (returned; a transactional task's writes committed with it)
                 │ └──► failed     (retries spent, unknown task, arguments that no longer fit)
                 └────► cancelled  (cancel(); also from queued/scheduled)

    retry(id): failed or cancelled ──► queued

``scheduled`` is ``queued`` with a ``run_at`` still in the future; the table stores ``queued``.
Times are Unix seconds (float) in the tables and aware UTC datetimes in ``JobInfo``.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "LIVE_STATUSES",
    "STATUSES",
    "JobInfo",
    "QueueStats",
    "from_epoch",
]

STATUSES = ("queued", "scheduled", "running", "done", "failed", "cancelled")
LIVE_STATUSES = ("queued", "running")  # as stored: at most one live job per dedup key


def from_epoch(value: float | None) -> dt.datetime | None:
    """A stored time (Unix seconds) as an aware UTC datetime."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(float(value), dt.UTC)


@dataclass(frozen=True)
class JobInfo:
    """One job as stored: what it runs, where it stands, and how it ended."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    priority: int
    key: str | None
    run_at: dt.datetime | None
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    traceback: str | None
    result: Any

    @classmethod
    def from_row(cls, row: Any, now: float) -> JobInfo:
        status = row["status"]
        if status == "queued" and row["run_at"] is not None and row["run_at"] > now:
            status = "scheduled"
        return cls(
            id=int(row["id"]),
            queue=row["queue"],
            task=row["task"],
            args=json.loads(row["args"]),
            status=status,
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            priority=int(row["priority"]),
            key=row["key"],
            run_at=from_epoch(row["run_at"]),
            created_at=from_epoch(row["created_at"]),
            started_at=from_epoch(row["started_at"]),
            finished_at=from_epoch(row["finished_at"]),
            error=row["error"],
            traceback=row["traceback"],
            result=None if row["result"] is None else json.loads(row["result"]),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 text."""
        data = dict(self.__dict__)
        for name in ("run_at", "created_at", "started_at", "finished_at"):
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return data


@dataclass(frozen=True)
class QueueStats:
    """Counts by status and by task, the oldest ready job's wait, and the recent done rate."""

    queue: str
    by_status: dict[str, int] = field(default_factory=dict)
    by_task: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest_queued_age: float | None = None  # seconds a ready job has waited, None when none
    done_per_second: float = 0.0  # over the last minute

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
