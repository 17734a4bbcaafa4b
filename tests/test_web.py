"""awaitdb.web on FastAPI and plain Starlette: lifespan, per-request transactions, health,
metrics, no secret in any response, and Records serialised as JSON objects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from fastapi import FastAPI, HTTPException, Response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import awaitdb
import awaitdb.web
from awaitdb import Record
from tests.conftest import write


class UserOut(pydantic.BaseModel):
    id: int
    name: str


def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    write(
        folder,
        "0001_users.sql",
        """
        -- up
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        -- down
        DROP TABLE users;
        """,
    )
    return folder


def secret_url(db_url: str) -> str:
    """The PostgreSQL URL with a password (trust auth ignores it): it must never leak."""
    return db_url.replace("postgresql://postgres@", "postgresql://postgres:s3cr3t-pw@")


def fastapi_app(url: str, folder: Path, workers: list[Any]) -> FastAPI:
    app = FastAPI(
        lifespan=awaitdb.web.lifespan(url, migrations=str(folder), workers=workers, grace=5)
    )
    app.include_router(awaitdb.web.health_router())
    app.mount("/metrics", awaitdb.web.metrics_app())

    @app.post("/users")
    async def create(name: str, tx: awaitdb.web.Transaction) -> Record:
        return await tx.fetch_one(
            "INSERT INTO users (id, name) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM users),"
            " :name) RETURNING id, name",
            {"name": name},
        )

    @app.post("/users/http-error")
    async def http_error(name: str, tx: awaitdb.web.Transaction) -> None:
        await tx.execute("INSERT INTO users (id, name) VALUES (100, :name)", {"name": name})
        raise HTTPException(409, "changed my mind")

    @app.post("/users/error-status")
    async def error_status(name: str, tx: awaitdb.web.Transaction, response: Response) -> dict:
        await tx.execute("INSERT INTO users (id, name) VALUES (101, :name)", {"name": name})
        response.status_code = 422
        return {"detail": "rejected"}

    @app.post("/users/crash")
    async def crash(name: str, tx: awaitdb.web.Transaction) -> None:
        await tx.execute("INSERT INTO users (id, name) VALUES (102, :name)", {"name": name})
        raise RuntimeError("boom")

    @app.get("/users")
    async def list_users(db: awaitdb.web.DB) -> list[Record]:
        return await db.fetch_all("SELECT id, name FROM users ORDER BY id")

    @app.get("/users/models", response_model=list[UserOut])
    async def list_models(db: awaitdb.web.DB) -> Any:
        return await db.fetch_all("SELECT id, name FROM users ORDER BY id")

    @app.get("/users/{user_id}")
    async def one(user_id: int, db: awaitdb.web.DB) -> Record | None:
        return await db.fetch_one("SELECT id, name FROM users WHERE id = :id", {"id": user_id})

    return app


class FlakyWorker:
    """A start()/stop() worker whose ``alive`` the test switches off."""

    def __init__(self) -> None:
        self.alive = False

    def start(self) -> None:
        self.alive = True

    async def stop(self) -> None:
        self.alive = False


def test_fastapi_transactions_records_health_and_metrics(db_url: str, tmp_path: Path) -> None:
    url = secret_url(db_url)
    folder = migrations(tmp_path)
    worker = FlakyWorker()
    with TestClient(fastapi_app(url, folder, [worker]), raise_server_exceptions=False) as client:
        assert worker.alive
        assert client.post("/users", params={"name": "ada"}).json() == {"id": 1, "name": "ada"}
        assert client.post("/users", params={"name": "bob"}).json() == {"id": 2, "name": "bob"}
        # every failure mode rolls the request's transaction back
        assert client.post("/users/http-error", params={"name": "x1"}).status_code == 409
        assert client.post("/users/error-status", params={"name": "x2"}).status_code == 422
        assert client.post("/users/crash", params={"name": "x3"}).status_code == 500
        duplicate = client.post("/users", params={"name": "ada"})
        assert duplicate.status_code == 500
        # Records are JSON objects, as a list, alone, through a response model, or null
        expected = [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]
        assert client.get("/users").json() == expected
        assert client.get("/users/models").json() == expected
        assert client.get("/users/2").json() == {"id": 2, "name": "bob"}
        assert client.get("/users/9").json() is None

        bodies = []
        live = client.get("/health")
        assert live.status_code == 200 and live.json()["status"] == "ok"
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        pool = client.get("/health/db-pool")
        assert pool.status_code == 200 and pool.json()["pool_size"] >= 1
        assert pool.json()["queries"] > 0
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        for name in (
            "awaitdb_pool_connections{",
            "awaitdb_queries_total{",
            "awaitdb_query_seconds_bucket{",
            "awaitdb_acquire_seconds_count",
            'awaitdb_errors_total{class="UniqueViolation"} 1.0',
            "awaitdb_loop_lag_seconds{",
            "awaitdb_loop_stalls_total",
            "awaitdb_offload_queued",
            'awaitdb_service_up{kind="worker",name="FlakyWorker"} 1.0',
        ):
            assert name in text, name
        count = float(re.search(r"awaitdb_query_seconds_count (\S+)", text).group(1))  # type: ignore[union-attr]
        assert count > 0
        bodies += [live.text, ready.text, pool.text, text]

        # readiness: a dead worker, then migrations behind head
        worker.alive = False
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["worker FlakyWorker: not running"]
        worker.alive = True
        write(folder, "0002_more.sql", "-- up\nCREATE TABLE more (id INTEGER);\n")
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["migrations: not at head, 1 pending (0002_more)"]
        bodies.append(ready.text)
        for body in bodies:
            assert "s3cr3t" not in body and "postgresql://" not in body
    assert not worker.alive  # stopped by the lifespan


def test_ready_is_503_when_the_database_does_not_answer(sqlite_url: str) -> None:
    app = Starlette(routes=awaitdb.web.health_routes(), lifespan=awaitdb.web.lifespan(sqlite_url))
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        runtime: awaitdb.web.Runtime = app.state.awaitdb
        asyncio.run(runtime.db.close())  # closing needs no loop of its own on SQLite
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["database: no answer (InterfaceError)"]


class Recorder:
    """Duck-typed services of each kind, recording start and stop order."""

    def __init__(self, log: list[str], name: str, hang: bool = False) -> None:
        self.log, self.name, self.hang = log, name, hang

    async def __aenter__(self) -> Recorder:
        self.log.append(f"start {self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hang:
            await asyncio.sleep(3600)  # never stops: the grace time ends it
        self.log.append(f"stop {self.name}")


class Jobs:
    def __init__(self, log: list[str], db: awaitdb.Database) -> None:
        self.log, self.db, self.name = log, db, "jobs"

    async def start(self) -> None:
        self.log.append(f"start jobs (db {self.db.backend})")

    def stop(self) -> None:
        self.log.append("stop jobs")

    def stats(self) -> dict[str, Any]:
        return {"by_status": {"queued": 3, "done": 5}, "lag": {"audit": 2}}


def test_plain_starlette_lifespan_order_grace_and_transactions(sqlite_url: str) -> None:
    log: list[str] = []

    async def add(request: Request) -> JSONResponse:
        name = request.query_params["name"]
        try:
            async with awaitdb.web.transaction(request) as tx:
                await tx.execute("INSERT INTO t (name) VALUES (:n)", {"n": name})
                if name == "bad":
                    raise ValueError("rolled back")
        except ValueError:
            return JSONResponse({"error": "bad"}, status_code=400)
        db = awaitdb.web.get_db(request)
        return JSONResponse({"count": await db.fetch_val("SELECT count(*) FROM t")})

    async def setup_table(db: awaitdb.Database) -> Recorder:
        await db.execute("CREATE TABLE t (name TEXT)")
        return Recorder(log, "consumer")

    lifespan = awaitdb.web.lifespan(
        sqlite_url,
        workers=[lambda db: Jobs(log, db), Recorder(log, "hangs", hang=True)],
        consumers=[setup_table],
        grace=0.3,
    )
    app = Starlette(
        routes=[
            Route("/add", add, methods=["POST"]),
            *awaitdb.web.health_routes(),
            Mount("/metrics", app=awaitdb.web.metrics_app(include_default_registry=False)),
        ],
        lifespan=lifespan,
    )
    with TestClient(app) as client:
        assert client.post("/add", params={"name": "a"}).json() == {"count": 1}
        assert client.post("/add", params={"name": "bad"}).status_code == 400
        assert client.post("/add", params={"name": "b"}).json() == {"count": 2}
        text = client.get("/metrics").text
        assert 'awaitdb_jobs{queue="jobs",status="queued"} 3.0' in text
        assert 'awaitdb_stream_lag{group="audit",stream="jobs"} 2.0' in text
        assert "python_gc" not in text  # the default registry was left out
        runtime = app.state.awaitdb
    assert log == [
        "start jobs (db sqlite)",
        "start hangs",
        "start consumer",
        "stop consumer",
        "stop jobs",  # 'hangs' never stopped: the grace time moved on without it
    ]
    assert runtime.db.closed and runtime.monitor is not None and not runtime.monitor.running


def test_bad_lifespan_input_is_named(sqlite_url: str) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="URL or a Database"):
        awaitdb.web.lifespan(42)  # type: ignore[arg-type]
    with pytest.raises(awaitdb.InterfaceError, match="grace"):
        awaitdb.web.lifespan(sqlite_url, grace=0)
    with pytest.raises(awaitdb.InterfaceError, match="unknown option"):
        awaitdb.web.lifespan(sqlite_url, bogus=1)
    app = Starlette(lifespan=awaitdb.web.lifespan(sqlite_url, workers=[object()]))
    with pytest.raises(awaitdb.InterfaceError, match="cannot start worker"), TestClient(app):
        pass


def test_records_through_pydantic() -> None:
    from awaitdb._record import record_class

    rec = record_class(("id", "name"))((1, "ada"))
    adapter = pydantic.TypeAdapter(list[Record])
    assert adapter.dump_python([rec]) == [{"id": 1, "name": "ada"}]
    assert adapter.dump_json([rec]) == b'[{"id":1,"name":"ada"}]'
    assert UserOut.model_validate(rec) == UserOut(id=1, name="ada")
    assert adapter.validate_python([{"id": 2}])[0]["id"] == 2
    with pytest.raises(pydantic.ValidationError):
        adapter.validate_python([42])


async def test_lifespan_with_a_database_it_does_not_own(db_url: str, tmp_path: Path) -> None:
    folder = migrations(tmp_path)
    async with awaitdb.connect(db_url) as db:
        monitor = awaitdb.LoopMonitor(threshold_ms=500)
        span = awaitdb.web.lifespan(db, migrations=str(folder), monitor=monitor)
        async with span(Starlette()) as state:
            runtime = state["awaitdb"]
            assert runtime.db is db and runtime.monitor is monitor and monitor.running
            assert await db.fetch_val("SELECT count(*) FROM users") == 0  # migrated
            assert await awaitdb.web.readiness(runtime) == []
        assert not db.closed and not monitor.running  # the caller still owns the database


async def test_a_task_consumer_and_stream_style_stats(sqlite_url: str) -> None:
    class Group:
        def __init__(self, group: str, lag: int) -> None:
            self.group, self.lag = group, lag

    class Stats:
        groups = (Group("audit", 4), Group("mail", 0))

    class Stream:
        name = "events"

        async def stats(self) -> Stats:
            return Stats()

    class Pump:
        def __init__(self) -> None:
            self.stream = Stream()
            self.alive = True

        async def __aenter__(self) -> Pump:
            return self

        async def __aexit__(self, *exc: object) -> None:
            self.alive = False

    seen: list[str] = []

    async def forever(db: awaitdb.Database) -> None:
        seen.append(db.backend)
        await asyncio.sleep(3600)

    span = awaitdb.web.lifespan(
        sqlite_url,
        consumers=[lambda db: asyncio.ensure_future(forever(db)), Pump()],
        monitor=False,
    )
    app = Starlette(routes=[Route("/metrics", awaitdb.web.metrics_app())], lifespan=span)
    async with span(app) as state:
        runtime = state["awaitdb"]
        app.state.awaitdb = runtime
        await asyncio.sleep(0)
        assert seen == ["sqlite"] and [s.alive() for s in runtime.services] == [True, True]
        from awaitdb.web._metrics import _service_figures

        figures = await _service_figures(runtime)
        assert figures == [("consumer", "events", {"lag": {"audit": 4, "mail": 0}})]
        task = runtime.services[0].obj.task
    assert task.cancelled()  # the task consumer was cancelled on shutdown


def test_ready_is_503_and_service_down_after_a_jobs_worker_died(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from awaitdb import jobs

    crash = asyncio.Event()

    async def claim_then_crash(self: jobs.Worker) -> None:
        await crash.wait()
        raise RuntimeError("claim loop broke")

    monkeypatch.setattr(jobs.Worker, "_claim_loop", claim_then_crash)

    async def make_queue(db: awaitdb.Database) -> jobs.Queue:
        return jobs.Queue(db)

    app = Starlette(
        routes=[
            *awaitdb.web.health_routes(),
            Mount("/metrics", app=awaitdb.web.metrics_app(include_default_registry=False)),
        ],
        lifespan=awaitdb.web.lifespan(sqlite_url, workers=[make_queue], grace=5),
    )
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        assert 'awaitdb_service_up{kind="worker",name="Worker"} 1.0' in client.get("/metrics").text
        client.portal.call(crash.set)  # type: ignore[union-attr]
        for _ in range(200):  # bounded: the worker task ends within a few loop turns
            ready = client.get("/health/ready")
            if ready.status_code == 503:
                break
            client.portal.call(asyncio.sleep, 0.02)  # type: ignore[union-attr]
        assert ready.status_code == 503
        assert ready.json()["reasons"] == ["worker Worker: not running"]
        assert 'awaitdb_service_up{kind="worker",name="Worker"} 0.0' in client.get("/metrics").text
    assert "worker Worker stopped with an error" in caplog.text
    assert "claim loop broke" in caplog.text


async def test_shutdown_walks_away_from_services_that_ignore_cancellation(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    released = False

    async def deaf() -> None:  # swallows every cancellation until the test releases it
        while not released:
            try:
                await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                pass

    class DeafWorker:
        name = "deaf-worker"

        def start(self) -> None:
            pass

        async def stop(self) -> None:
            await deaf()

    span = awaitdb.web.lifespan(
        sqlite_url,
        workers=[DeafWorker()],
        consumers=[lambda db: asyncio.get_running_loop().create_task(deaf(), name="deaf-task")],
        grace=0.3,
    )
    entered = span(Starlette())
    state = await entered.__aenter__()
    runtime: awaitdb.web.Runtime = state["awaitdb"]
    exiting = asyncio.ensure_future(entered.__aexit__(None, None, None))
    try:
        done, _ = await asyncio.wait({exiting}, timeout=10)  # bounded; grace is 0.3 s
        assert done, "lifespan shutdown hung on services that ignore cancellation"
        assert runtime.db.closed
        assert "consumer deaf-task did not stop within the grace time" in caplog.text
        assert "worker deaf-worker did not stop within the grace time" in caplog.text
        assert len(runtime.abandoned) == 2
    finally:
        released = True
        await asyncio.wait({exiting, *runtime.abandoned}, timeout=10)
    assert not runtime.abandoned


async def test_acquire_histogram_books_a_timed_out_wait_as_slow(db_url: str) -> None:
    """A timed-out acquisition is counted once, with its wait, not as an instant one."""
    from awaitdb.web._metrics import Histogram

    async with awaitdb.connect(db_url, max_size=1, acquire_timeout=0.2) as db:
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with db.transaction() as tx:
                await tx.execute("SELECT 1")
                holding.set()
                await done.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        with pytest.raises(awaitdb.PoolTimeout):
            async with db.transaction():
                pass
        done.set()
        await holder
        stats, raw = db.stats(), db._stats
        assert stats.acquire_timeouts == 1
        assert len(raw.acquire_waits) == stats.acquisitions  # one wait sample per acquisition
        histogram = Histogram()
        histogram.update(stats.acquisitions, raw.acquire_waits)
        quick = sum(c for b, c in zip(histogram.buckets, histogram.counts, strict=False) if b < 0.2)
        assert quick == stats.acquisitions - 1  # the timed-out one waited the full 0.2 s
        assert histogram.sum >= 0.2


def test_which_error_responses_roll_the_request_transaction_back(sqlite_url: str) -> None:
    """The rules docs/services.md states: the transaction sees exceptions raised inside it and
    the status set on the injected ``Response``; not a returned response, and not a dependency
    declared before ``tx`` that fails after its ``yield`` (its exit runs after the COMMIT)."""
    from fastapi import Depends

    async def audit() -> AsyncIterator[None]:
        yield
        raise HTTPException(403, "audit refused it")  # after the endpoint returned

    audited = Depends(audit, scope="function")

    async def setup(db: awaitdb.Database) -> Recorder:
        await db.execute("CREATE TABLE t (name TEXT)")
        return Recorder([], "setup")

    app = FastAPI(lifespan=awaitdb.web.lifespan(sqlite_url, consumers=[setup], monitor=False))

    @app.post("/audit-before")  # audit exits after tx: tx has committed already
    async def audit_before(_: None = audited, *, tx: awaitdb.web.Transaction) -> None:
        await tx.execute("INSERT INTO t VALUES ('audit-before')")

    @app.post("/audit-after")  # audit exits first, inside tx: its error rolls tx back
    async def audit_after(tx: awaitdb.web.Transaction, _: None = audited) -> None:
        await tx.execute("INSERT INTO t VALUES ('audit-after')")

    @app.post("/returned-500")  # a returned response is invisible to the dependency
    async def returned_500(tx: awaitdb.web.Transaction) -> JSONResponse:
        await tx.execute("INSERT INTO t VALUES ('returned-500')")
        return JSONResponse({"detail": "failed"}, status_code=500)

    @app.post("/status-500")  # the status set on the injected Response is seen
    async def status_500(tx: awaitdb.web.Transaction, response: Response) -> dict[str, str]:
        await tx.execute("INSERT INTO t VALUES ('status-500')")
        response.status_code = 500
        return {"detail": "failed"}

    @app.get("/rows")
    async def rows(db: awaitdb.web.DB) -> list[str]:
        return [r["name"] for r in await db.fetch_all("SELECT name FROM t ORDER BY name")]

    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/audit-before", "/audit-after"):
            assert client.post(path).status_code == 403
        for path in ("/returned-500", "/status-500"):
            assert client.post(path).status_code == 500
        assert client.get("/rows").json() == ["audit-before", "returned-500"]
