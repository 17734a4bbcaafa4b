"""The task board's benchmarked endpoints written the usual SQLAlchemy async way (the W1 anchor).

Same framework (FastAPI), same schema, same rules and the same writes per request as
``examples/taskboard/app.py``: a created task or a status change writes the task, an audit row
and a job row in one transaction. ORM models, ``AsyncSession`` per request, pydantic response
models read ``from_attributes`` (the pattern of the seed services). SQLite runs through
aiosqlite in WAL mode with ``synchronous=NORMAL`` (awaitdb's defaults); PostgreSQL through
asyncpg. Pool: 10 connections, like awaitdb's default.
"""

# no ``from __future__ import annotations``: the endpoints' annotations name a local alias
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import DateTime, Index, Integer, String, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ALLOWED: dict[str, set[str]] = {
    "todo": {"doing", "cancelled"},
    "doing": {"todo", "done", "cancelled"},
    "done": set(),
    "cancelled": {"todo"},
}


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="todo")
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("tasks_status_id", "status", "id"),)


class Audit(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(String)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    __tablename__ = "task_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(String)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class StatusIn(BaseModel):
    status: Literal["todo", "doing", "done", "cancelled"]


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    status: str
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class Page(BaseModel):
    items: list[TaskOut]
    next_after: int | None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sqlalchemy_url(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


def record_change(
    session: AsyncSession, task_id: int, event_name: str, detail: dict[str, Any]
) -> None:
    at = now()
    session.add(Audit(task_id=task_id, event=event_name, detail=json.dumps(detail), at=at))
    payload = json.dumps({"event": event_name, **detail})
    session.add(Job(task_id=task_id, kind="notify", payload=payload, created_at=at))


def create_app(url: str | None = None) -> FastAPI:
    url = sqlalchemy_url(url or os.environ["AWAITDB_URL"])
    engine = create_async_engine(url, pool_size=10, max_overflow=0)
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    Session = Annotated[AsyncSession, Depends(get_session)]
    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/tasks", status_code=201)
    async def create_task(body: TaskIn, session: Session) -> TaskOut:
        async with session.begin():
            at = now()
            task = Task(title=body.title, status="todo", version=1, created_at=at, updated_at=at)
            session.add(task)
            await session.flush()
            record_change(session, task.id, "task.created", {"title": body.title})
        return TaskOut.model_validate(task)

    @app.get("/tasks")
    async def list_tasks(
        session: Session,
        status: str | None = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Page:
        query = select(Task).where(Task.id > after)
        if status:
            query = query.where(Task.status == status)
        tasks = (await session.scalars(query.order_by(Task.id).limit(limit))).all()
        next_after = tasks[-1].id if len(tasks) == limit else None
        return Page(items=[TaskOut.model_validate(t) for t in tasks], next_after=next_after)

    @app.get("/tasks/{task_id}")
    async def read_task(task_id: int, session: Session) -> TaskOut:
        task = await session.get(Task, task_id)
        if task is None:
            raise HTTPException(404, f"no task {task_id}")
        return TaskOut.model_validate(task)

    @app.post("/tasks/{task_id}/status")
    async def change_status(task_id: int, body: StatusIn, session: Session) -> TaskOut:
        async with session.begin():
            task = await session.get(Task, task_id)
            if task is None:
                raise HTTPException(404, f"no task {task_id}")
            old = task.status
            if body.status not in ALLOWED[old]:
                raise HTTPException(409, f"a {old} task cannot become {body.status}")
            task.status = body.status
            task.version += 1
            task.updated_at = now()
            record_change(session, task_id, "task.status_changed", {"from": old, "to": body.status})
        return TaskOut.model_validate(task)

    return app
