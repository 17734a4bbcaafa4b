"""The task board: a FastAPI service on awaitdb (CRUD, status rules, jobs, audit, health, metrics).

    python -m examples.taskboard                    # SQLite file taskboard.db, port 8000
    AWAITDB_URL=postgresql://... python -m examples.taskboard

Task states (anything else is refused with 409)::

    todo ──> doing ──> done
     ^ │      │ │
     │ └──────┼─┴──> cancelled ──> todo
     └────────┘

Every change writes its audit-log row and queues a notification job in the same transaction as
the change itself (the transactional outbox), so a committed change always has both and a
rolled-back one has neither. ``Notifier`` works through the jobs in the background.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Response
from pydantic import BaseModel, Field
from starlette.routing import Route

import awaitdb
import awaitdb.web
from awaitdb import Record

__all__ = ["ALLOWED", "Notifier", "create_app"]

logger = logging.getLogger("taskboard")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///taskboard.db"

Status = Literal["todo", "doing", "done", "cancelled"]
ALLOWED: dict[str, set[str]] = {
    "todo": {"doing", "cancelled"},
    "doing": {"todo", "done", "cancelled"},
    "done": set(),
    "cancelled": {"todo"},
}
TASK_COLUMNS = "id, title, status, version, created_at, updated_at"


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class TaskPatch(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class StatusIn(BaseModel):
    status: Status


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def record_change(
    tx: awaitdb.Transaction, task_id: int, event: str, detail: dict[str, Any]
) -> None:
    """The audit row and the notification job of one change, in the caller's transaction."""
    text, at = json.dumps(detail), now()
    await tx.execute(
        "INSERT INTO audit_log (task_id, event, detail, at) VALUES (:t, :e, :d, :at)",
        {"t": task_id, "e": event, "d": text, "at": at},
    )
    await tx.execute(
        "INSERT INTO task_jobs (task_id, kind, payload, created_at) VALUES (:t, :k, :p, :at)",
        {"t": task_id, "k": "notify", "p": json.dumps({"event": event, **detail}), "at": at},
    )


class Notifier:
    """The background worker: claims queued jobs in batches and marks them done. Health and
    metrics read ``alive`` and ``stats()`` (jobs by status)."""

    name = "notifier"

    def __init__(self, db: awaitdb.Database, idle_sleep: float = 0.05) -> None:
        self.db = db
        self.idle_sleep = idle_sleep
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskboard-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim up to 50 queued jobs, 'send' them, mark them done; returns how many."""
        async with self.db.transaction() as tx:
            jobs = await tx.fetch_all(
                "UPDATE task_jobs SET status = 'running', attempts = attempts + 1 "
                "WHERE status = 'queued' AND id IN "
                "(SELECT id FROM task_jobs WHERE status = 'queued' ORDER BY id LIMIT 50) "
                "RETURNING id, task_id, payload"
            )
            for job in jobs:
                logger.debug("notify watchers of task %s: %s", job["task_id"], job["payload"])
            if jobs:
                at = now()
                await tx.execute_many(
                    "UPDATE task_jobs SET status = 'done', done_at = :at WHERE id = :id",
                    [{"at": at, "id": job["id"]} for job in jobs],
                )
        return len(jobs)

    async def _run(self) -> None:
        while True:
            try:
                if await self.run_once() == 0:
                    await asyncio.sleep(self.idle_sleep)
            except awaitdb.TransientError:
                await asyncio.sleep(self.idle_sleep)

    async def stats(self) -> dict[str, Any]:
        rows = await self.db.fetch_all(
            "SELECT status, count(*) AS n FROM task_jobs GROUP BY status"
        )
        return {"by_status": {row["status"]: row["n"] for row in rows}}


def create_app(url: str | None = None, *, notifier: bool = True) -> FastAPI:
    """The task-board app on ``url`` (default ``$AWAITDB_URL``, then ``sqlite:///taskboard.db``);
    ``notifier=False`` leaves the jobs queued (the benchmark measures the request path alone)."""
    url = url or os.environ.get("AWAITDB_URL") or DEFAULT_URL
    dialect = "postgresql" if url.startswith(("postgres://", "postgresql")) else "sqlite"
    app = FastAPI(
        title="task board",
        lifespan=awaitdb.web.lifespan(
            url,
            migrations=str(MIGRATIONS / dialect),
            workers=[Notifier] if notifier else [],
            grace=5,
        ),
    )
    app.include_router(awaitdb.web.health_router())
    app.router.routes.append(Route("/metrics", awaitdb.web.metrics_app()))

    async def get_task(db: awaitdb.Database | awaitdb.Transaction, task_id: int) -> Record:
        task = await db.fetch_one(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id", {"id": task_id}
        )
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        return task

    @app.post("/tasks", status_code=201)
    async def create_task(body: TaskIn, tx: awaitdb.web.Transaction) -> Record:
        at = now()
        task = await tx.fetch_one(
            "INSERT INTO tasks (title, created_at, updated_at) VALUES (:title, :at, :at) "
            f"RETURNING {TASK_COLUMNS}",
            {"title": body.title, "at": at},
        )
        assert task is not None
        await record_change(tx, task["id"], "task.created", {"title": body.title})
        return task

    @app.get("/tasks")
    async def list_tasks(
        db: awaitdb.web.DB,
        status: Status | None = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """One page, by id (keyset pagination): pass ``next_after`` back as ``after``."""
        where = "id > :after" + (" AND status = :status" if status else "")
        params: dict[str, Any] = {"after": after, "limit": limit}
        if status:
            params["status"] = status
        items = await db.fetch_all(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE {where} ORDER BY id LIMIT :limit", params
        )
        next_after = items[-1]["id"] if len(items) == limit else None
        return {"items": items, "next_after": next_after}

    @app.get("/tasks/{task_id}")
    async def read_task(task_id: int, db: awaitdb.web.DB) -> Record:
        return await get_task(db, task_id)

    @app.patch("/tasks/{task_id}")
    async def rename_task(task_id: int, body: TaskPatch, tx: awaitdb.web.Transaction) -> Record:
        task = await tx.fetch_one(
            "UPDATE tasks SET title = :title, version = version + 1, updated_at = :at "
            f"WHERE id = :id RETURNING {TASK_COLUMNS}",
            {"title": body.title, "at": now(), "id": task_id},
        )
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        await record_change(tx, task_id, "task.renamed", {"title": body.title})
        return task

    @app.post("/tasks/{task_id}/status")
    async def change_status(task_id: int, body: StatusIn, tx: awaitdb.web.Transaction) -> Record:
        current = await get_task(tx, task_id)
        old = current["status"]
        if body.status not in ALLOWED[old]:
            raise HTTPException(409, f"a {old} task cannot become {body.status}")
        task = await tx.fetch_one(
            "UPDATE tasks SET status = :new, version = version + 1, updated_at = :at "
            f"WHERE id = :id AND status = :old RETURNING {TASK_COLUMNS}",
            {"new": body.status, "old": old, "at": now(), "id": task_id},
        )
        if task is None:  # changed by someone else since we read it
            raise HTTPException(409, f"task {task_id} changed meanwhile; read it again")
        await record_change(tx, task_id, "task.status_changed", {"from": old, "to": body.status})
        return task

    @app.delete("/tasks/{task_id}", status_code=204)
    async def delete_task(task_id: int, tx: awaitdb.web.Transaction) -> Response:
        task = await get_task(tx, task_id)
        await tx.execute("DELETE FROM tasks WHERE id = :id", {"id": task_id})
        await record_change(tx, task_id, "task.deleted", {"title": task["title"]})
        return Response(status_code=204)

    @app.get("/tasks/{task_id}/audit")
    async def task_audit(task_id: int, db: awaitdb.web.DB) -> list[Record]:
        return await db.fetch_all(
            "SELECT id, event, detail, at FROM audit_log WHERE task_id = :id ORDER BY id",
            {"id": task_id},
        )

    @app.get("/jobs")
    async def job_counts(db: awaitdb.web.DB) -> dict[str, int]:
        rows = await db.fetch_all("SELECT status, count(*) AS n FROM task_jobs GROUP BY status")
        return {row["status"]: row["n"] for row in rows}

    return app
