"""Durable background jobs kept in the application's own database (SQLite or PostgreSQL).

::

    queue = jobs.Queue(db)                       # tables created on first use

    @queue.task(retries=5, timeout=60)
    async def send_receipt(order_id: int) -> None: ...

    async with db.transaction():                 # the job commits or rolls back with the order
        await db.execute("INSERT INTO orders ...")
        await send_receipt.enqueue(order_id=7)

    await jobs.Worker(queue, concurrency=10).run()

Guarantees: at-least-once execution for ordinary tasks, exactly-once database effects for
``transactional=True`` tasks. The guide is ``docs/jobs.md``.
"""

from __future__ import annotations

from ._jobs.migration import install
from ._jobs.models import STATUSES, JobInfo, QueueStats
from ._jobs.queue import Queue, Task
from ._jobs.sync import SyncQueue
from ._jobs.worker import Worker

__all__ = ["STATUSES", "JobInfo", "Queue", "QueueStats", "SyncQueue", "Task", "Worker", "install"]
