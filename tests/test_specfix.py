"""Spec spellings made to work as the pages write them (events, jobs, core-api ``ssl``)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import pg_url_or_skip

import awaitdb
from awaitdb import events, jobs

# -- events.md "Tied to transactions": a Bus() with no db finds the current transaction -------


async def test_bus_without_db_delivers_after_commit_right_when_the_block_returns(
    adb: Any,
) -> None:
    bus = events.Bus()
    seen: list[tuple[str, Any]] = []
    bus.on("t.*", lambda e: seen.append(("sync", e.data)))

    @bus.on("t.*")
    async def fast(event: events.Event) -> None:  # never suspends
        seen.append(("async", event.data))

    async with adb.transaction():
        report = await bus.emit("t.b", {"n": 1})
        assert report.deferred
        assert seen == []
    # Fast listeners have run by the time the block returns.
    assert seen == [("sync", {"n": 1}), ("async", {"n": 1})]

    seen.clear()
    with pytest.raises(RuntimeError):
        async with adb.transaction():
            await bus.emit("t.b", {"n": 2})
            raise RuntimeError("roll back")
    await bus.drain()
    assert seen == []

    async with adb.transaction():
        await bus.emit("t.b", {"n": 3})
        with pytest.raises(RuntimeError):
            async with adb.transaction():  # a savepoint
                await bus.emit("t.b", {"n": 4})
                raise RuntimeError("roll back the savepoint")
        bus.emit_nowait("t.b", {"n": 5})
    await bus.drain()
    assert [d for _, d in seen] == [{"n": 3}, {"n": 3}, {"n": 5}, {"n": 5}]
    assert bus.stats().dropped_on_rollback == 2

    seen.clear()
    report = await bus.emit("t.b", {"n": 6})  # outside any transaction: at once
    assert not report.deferred and report.delivered == 2
    assert [d for _, d in seen] == [{"n": 6}, {"n": 6}]
    await bus.aclose()


async def test_a_slow_listener_keeps_running_after_the_block_and_drain_waits(adb: Any) -> None:
    bus = events.Bus()
    release = asyncio.Event()
    done: list[int] = []

    @bus.on("slow")
    async def slow(event: events.Event) -> None:
        await release.wait()
        done.append(event.data)

    async with adb.transaction():
        await bus.emit("slow", 1)
    assert done == [] and bus.stats().pending_tasks == 1  # the block did not wait for it
    release.set()
    await bus.aclose()
    assert done == [1]


async def test_current_transaction_is_the_innermost_block_of_any_database(adb: Any) -> None:
    assert awaitdb.current_transaction() is None
    async with adb.transaction() as outer:
        assert awaitdb.current_transaction() is outer
        async with adb.transaction() as inner:
            assert awaitdb.current_transaction() is inner

            async def child() -> Any:
                return awaitdb.current_transaction()

            assert await asyncio.create_task(child()) is inner
        assert awaitdb.current_transaction() is outer
    assert awaitdb.current_transaction() is None


def test_current_transaction_on_the_sync_face(sdb: Any) -> None:
    assert awaitdb.current_transaction() is None
    with sdb.transaction() as outer:
        assert awaitdb.current_transaction() is outer
        with sdb.transaction() as inner:
            assert awaitdb.current_transaction() is inner
        assert awaitdb.current_transaction() is outer
    assert awaitdb.current_transaction() is None


# -- jobs.md: a module-level ``jobs.Queue(awaitdb.connect(url))`` and the worker CLI ----------

MODULE_APP = """
    import awaitdb
    from awaitdb import jobs

    queue = jobs.Queue(awaitdb.connect({url!r}))
    mail = jobs.Queue(queue.source, "mail")

    @queue.task(name="add", retries=0)
    async def add(a: int, b: int) -> int:
        return a + b

    @mail.task(name="send", retries=0)
    def send(to: str) -> str:
        return "sent to " + to
"""


def _import_app(tmp_path: Path, url: str, name: str) -> Any:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(MODULE_APP.format(url=url)))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_queue_given_connect_opens_lazily_and_closes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lazy.db'}"
    app = _import_app(tmp_path, url, "lazy_app")
    queue, mail = app.queue, app.mail
    with pytest.raises(awaitdb.InterfaceError, match="not open yet"):
        queue.db  # noqa: B018 - nothing opened at import
    job = await app.add.enqueue(a=1, b=2)  # opens the database on first use
    sent = await app.send.enqueue(to="ann")
    assert queue.db is mail.db  # one connect() object: one database
    async with jobs.Worker([queue, mail], concurrency=2) as worker:
        for _ in range(400):
            a, b = await queue.get(job), await mail.get(sent)
            if a and b and a.status == b.status == "done":
                break
            await asyncio.sleep(0.02)
    assert worker.counts["done"] == 2
    info = await queue.get(job)
    assert info is not None and info.result == 3
    db = queue.db
    await queue.aclose()
    await mail.aclose()  # idempotent: the same database
    assert db.closed


async def test_a_queue_given_a_database_is_not_closed_by_aclose(adb: Any) -> None:
    queue = jobs.Queue(adb)
    await queue.aclose()
    assert not adb.closed
    with pytest.raises(awaitdb.InterfaceError, match="Database"):
        jobs.Queue("sqlite:///x.db")  # type: ignore[arg-type]


def test_worker_cli_with_a_module_level_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    (tmp_path / "tasks_app.py").write_text(textwrap.dedent(MODULE_APP.format(url=url)))
    db = awaitdb.connect_sync(url)
    proc: subprocess.Popen[str] | None = None
    try:
        queue = jobs.SyncQueue(db)
        ok = queue.enqueue("add", a=20, b=22)
        command = [sys.executable, "-m", "awaitdb.cli", "worker", "tasks_app:queue", "--json"]
        proc = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = queue.get(ok)
            if info is not None and info.status == "done":
                break
            time.sleep(0.05)
        info = queue.get(ok)
        assert info is not None and info.status == "done" and info.result == 42, info
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
        assert proc.returncode == 0, stderr
        assert json.loads(stdout.strip().splitlines()[-1])["done"] == 1
        assert not (tmp_path / "awaitdb.sqlite3").exists()  # no stray default database
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        db.close()


# -- core-api.md: the PostgreSQL option ``ssl`` as asyncpg users pass it ---------------------


async def test_ssl_option_accepts_bools_contexts_and_modes(tmp_path: Path) -> None:
    import ssl

    from awaitdb._config import parse_config

    url = "postgresql://u@127.0.0.1/x"
    assert parse_config(url, ssl=True).options["ssl"] == "require"
    assert parse_config(url, ssl=False).options["ssl"] == "disable"
    assert parse_config(url + "?ssl=false").options["ssl"] == "disable"
    assert parse_config(url, ssl="Verify-Full").options["ssl"] == "verify-full"
    context = ssl.create_default_context()
    assert parse_config(url, ssl=context).options["ssl"] is context
    for bad in ("bogus", 1, 0.5, object()):
        with pytest.raises(awaitdb.InterfaceError, match="ssl"):
            awaitdb.connect(url, ssl=bad)
    with pytest.raises(awaitdb.InterfaceError, match="ssl"):
        awaitdb.connect_sync(url, ssl=context)  # psycopg takes no SSLContext


async def test_ssl_false_and_a_context_connect_to_the_loopback_server() -> None:
    import ssl

    pg_url = pg_url_or_skip()
    async with awaitdb.connect(pg_url, ssl=False) as db:
        assert await db.fetch_val("SELECT 1") == 1
    sdb = awaitdb.connect_sync(pg_url, ssl=False)
    try:
        assert sdb.fetch_val("SELECT 1") == 1
    finally:
        sdb.close()
    # The loopback server has SSL off: requiring it cannot connect.
    context = ssl.create_default_context()
    for value in (True, context):
        with pytest.raises(awaitdb.CannotConnect):
            async with asyncio.timeout(60):
                await awaitdb.connect(pg_url, ssl=value, acquire_timeout=2)


# -- jobs.md: several queues passed positionally ---------------------------------------------


async def test_worker_takes_several_queues_positionally(tmp_path: Path) -> None:
    async with awaitdb.connect(f"sqlite:///{tmp_path / 'w.db'}") as db:
        a, b = jobs.Queue(db), jobs.Queue(db, "mail")
        assert jobs.Worker(a, b, concurrency=10).queues == [a, b]
        assert jobs.Worker([a, b]).queues == [a, b]
        assert jobs.Worker(a).queues == [a]
        with pytest.raises(awaitdb.InterfaceError, match="same queue twice"):
            jobs.Worker(a, a)
        with pytest.raises(awaitdb.InterfaceError, match="Queue"):
            jobs.Worker(a, "mail")  # type: ignore[arg-type]
        with pytest.raises(awaitdb.InterfaceError, match="Queue"):
            jobs.Worker([a], b)  # type: ignore[arg-type]
