"""The task board: a FastAPI service on awaitdb (CRUD, status rules, jobs, audit, health, metrics).

    python -m examples.taskboard                    # SQLite file taskboard.db, port 8000
    AWAITDB_URL=postgresql://... python -m examples.taskboard

Task states (anything else is refused with 409)::

    todo ──> doing ──> done
     ^ │      │ │
     │ └──────┼─┴──> cancelled ──> todo
     └────────┘

Every change, in its own transaction, enqueues a notification job (``awaitdb.jobs``) and
publishes an event on the durable stream (``awaitdb.events``): both commit with the change or
not at all. A ``jobs.Worker`` runs the notifications; a stream consumer (group ``audit``) writes
each event to the audit log, at least once, made idempotent by the event's id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.routing import Route

import awaitdb
import awaitdb.web
from awaitdb import Record, events, jobs

__all__ = ["ALLOWED", "Board", "create_app"]

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


async def notify_watchers(task_id: int, event: str, detail: dict[str, Any]) -> None:
    """The notification job (a real service would send mail or call a webhook here)."""
    logger.debug("notify watchers of task %s: %s %s", task_id, event, detail)


class Board:
    """What the endpoints share: the jobs queue and the event stream of one database. The
    lifespan starts it (tables ready, audit group created) and stops it."""

    name = "taskboard"
    _open: ClassVar[dict[int, Board]] = {}  # by id of the database, while started

    def __init__(self, db: awaitdb.Database) -> None:
        self.db = db
        self.queue = jobs.Queue(db, name="taskboard")
        self.notify = self.queue.task(name="taskboard.notify", retries=5)(notify_watchers)
        self.stream = events.Stream(db)

    @classmethod
    def of(cls, db: awaitdb.Database) -> Board:
        """The started board of ``db``."""
        return cls._open[id(db)]

    async def start(self) -> None:
        await self.queue.ready()
        await self.stream.create_group("audit", "task.*", from_start=True)
        Board._open[id(self.db)] = self

    async def stop(self) -> None:
        Board._open.pop(id(self.db), None)
        await self.stream.aclose()

    async def record_change(self, task_id: int, event: str, detail: dict[str, Any]) -> None:
        """The job and the event of one change, in the caller's transaction."""
        await self.notify.enqueue(task_id=task_id, event=event, detail=detail)
        await self.stream.publish(event, {"task_id": task_id, **detail})

    async def write_audit(self) -> None:
        """The audit consumer: every ``task.*`` event becomes one audit-log row."""
        async with self.stream.subscribe("task.*", group="audit", from_start=True) as consumer:
            async for event in consumer:
                await self.db.execute(
                    "INSERT INTO audit_log (event_id, task_id, event, detail, at) "
                    "VALUES (:id, :task, :event, :detail, :at) ON CONFLICT (event_id) DO NOTHING",
                    {
                        "id": event.id,
                        "task": event.data["task_id"],
                        "event": event.name,
                        "detail": json.dumps(event.data),
                        "at": event.at,
                    },
                )


def get_board(request: Request) -> Board:
    return Board.of(awaitdb.web.get_db(request))


BoardDep = Annotated[Board, Depends(get_board)]


def create_app(url: str | None = None, *, background: bool = True) -> FastAPI:
    """The task-board app on ``url`` (default ``$AWAITDB_URL``, then ``sqlite:///taskboard.db``);
    ``background=False`` runs neither the jobs worker nor the audit consumer (the benchmark
    measures the request path alone; jobs and events still commit with each change)."""
    url = url or os.environ.get("AWAITDB_URL") or DEFAULT_URL
    dialect = "postgresql" if url.startswith(("postgres://", "postgresql")) else "sqlite"

    workers: list[Any] = [Board]  # started first: tables ready, the audit group created
    consumers: list[Any] = []
    if background:
        workers.append(lambda db: Board.of(db).queue)  # a jobs.Queue, run by a jobs.Worker
        consumers.append(
            lambda db: asyncio.get_running_loop().create_task(
                Board.of(db).write_audit(), name="audit-consumer"
            )
        )
    app = FastAPI(
        title="task board",
        lifespan=awaitdb.web.lifespan(
            url,
            migrations=str(MIGRATIONS / dialect),
            workers=workers,
            consumers=consumers,
            grace=5,
        ),
    )
    app.include_router(awaitdb.web.health_router())
    app.router.routes.append(Route("/metrics", awaitdb.web.metrics_app()))

    async def get_task(db: awaitdb.Database | awaitdb.Transaction, task_id: int) -> Record:
        sql = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = :id"
        task = await db.fetch_one(sql, {"id": task_id})
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        return task

    @app.post("/tasks", status_code=201)
    async def create_task(body: TaskIn, tx: awaitdb.web.Transaction, board: BoardDep) -> Record:
        at = now()
        task = await tx.fetch_one(
            "INSERT INTO tasks (title, created_at, updated_at) VALUES (:title, :at, :at) "
            f"RETURNING {TASK_COLUMNS}",
            {"title": body.title, "at": at},
        )
        assert task is not None
        await board.record_change(task["id"], "task.created", {"title": body.title})
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
    async def rename_task(
        task_id: int, body: TaskPatch, tx: awaitdb.web.Transaction, board: BoardDep
    ) -> Record:
        task = await tx.fetch_one(
            "UPDATE tasks SET title = :title, version = version + 1, updated_at = :at "
            f"WHERE id = :id RETURNING {TASK_COLUMNS}",
            {"title": body.title, "at": now(), "id": task_id},
        )
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        await board.record_change(task_id, "task.renamed", {"title": body.title})
        return task

    @app.post("/tasks/{task_id}/status")
    async def change_status(
        task_id: int, body: StatusIn, tx: awaitdb.web.Transaction, board: BoardDep
    ) -> Record:
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
        await board.record_change(task_id, "task.status_changed", {"from": old, "to": body.status})
        return task

    @app.delete("/tasks/{task_id}", status_code=204)
    async def delete_task(task_id: int, tx: awaitdb.web.Transaction, board: BoardDep) -> Response:
        task = await get_task(tx, task_id)
        await tx.execute("DELETE FROM tasks WHERE id = :id", {"id": task_id})
        await board.record_change(task_id, "task.deleted", {"title": task["title"]})
        return Response(status_code=204)

    @app.get("/tasks/{task_id}/audit")
    async def task_audit(task_id: int, db: awaitdb.web.DB) -> list[Record]:
        return await db.fetch_all(
            "SELECT id, event, detail, at FROM audit_log WHERE task_id = :id ORDER BY event_id",
            {"id": task_id},
        )

    @app.get("/jobs")
    async def job_counts(board: BoardDep) -> dict[str, int]:
        stats = await board.queue.stats()
        return {status: n for status, n in stats.by_status.items() if n}

    return app
