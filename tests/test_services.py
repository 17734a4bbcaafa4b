"""The seed-004 pattern with svcs: lazy async singletons, reverse-order shutdown, test overrides."""

from __future__ import annotations

import asyncio

import pytest
import svcs

import awaitdb
from awaitdb.services import register_database, register_singleton


class Mailer:
    """A service that depends on the database, standing in for a jobs queue or an event bus."""

    def __init__(self, db: awaitdb.Database, log: list[str]) -> None:
        self.db, self.log = db, log

    async def aclose(self) -> None:
        self.log.append(f"mailer closed while db.closed={self.db.closed}")


async def test_lazy_singletons_close_in_reverse_order(db_url: str) -> None:
    registry = svcs.Registry()
    log: list[str] = []
    db_service = register_database(registry, db_url)
    opened: list[int] = []

    async def open_mailer(container: svcs.Container) -> Mailer:
        opened.append(1)
        await asyncio.sleep(0.01)  # concurrent first callers must still get one instance
        return Mailer(await container.aget(awaitdb.Database), log)

    mailer_service = register_singleton(registry, Mailer, open_mailer)
    assert not db_service.opened and not mailer_service.opened  # lazy: nothing opened yet

    async def request() -> tuple[awaitdb.Database, Mailer]:
        async with svcs.Container(registry) as container:
            db, mailer = await container.aget(awaitdb.Database, Mailer)
            assert await db.fetch_val("SELECT 1") == 1
            return db, mailer

    results = await asyncio.gather(*(request() for _ in range(5)))
    assert len({id(db) for db, _ in results}) == 1 and len({id(m) for _, m in results}) == 1
    assert opened == [1]
    db = results[0][0]
    assert not db.closed  # the end of a request (container) leaves the singleton open

    async with svcs.Container(registry) as container:
        pings = container.get_pings()
        assert {p.name for p in pings} >= {"awaitdb._async.database.Database"}
        for ping in pings:
            await ping.aping()

    await registry.aclose()
    assert log == ["mailer closed while db.closed=False"] and db.closed


async def test_tests_override_the_database(db_url: str, tmp_path: object) -> None:
    registry = svcs.Registry()
    service = register_database(registry, "sqlite:///never-opened.db")
    async with awaitdb.connect(db_url) as test_db:
        registry.register_value(awaitdb.Database, test_db)  # the override wins
        async with svcs.Container(registry) as container:
            assert await container.aget(awaitdb.Database) is test_db
        other = svcs.Container(registry)
        other.register_local_value(awaitdb.Database, "local fake")
        assert await other.aget(awaitdb.Database) == "local fake"
        await other.aclose()
        await registry.aclose()
        assert not test_db.closed  # a value registered by the test stays the test's to close
    assert not service.opened


async def test_bad_database_registration_fails_at_once() -> None:
    registry = svcs.Registry()
    with pytest.raises(awaitdb.InterfaceError, match="unknown option"):
        register_database(registry, "sqlite:///x.db", bogus=1)
    with pytest.raises(awaitdb.InterfaceError, match="url must be a string"):
        register_database(registry, 42)  # type: ignore[arg-type]
    singleton = register_database(registry, "sqlite:///:memory:")
    await registry.aclose()
    async with svcs.Container(registry) as container:
        with pytest.raises(svcs.exceptions.ServiceNotFoundError):
            await container.aget(awaitdb.Database)
    with pytest.raises(awaitdb.InterfaceError, match="registry is closed"):
        await singleton.get(svcs.Container(registry))


async def test_database_queue_bus_and_stream_as_svcs_singletons(db_url: str) -> None:
    from awaitdb import events, jobs

    registry = svcs.Registry()
    register_database(registry, db_url)

    async def open_queue(container: svcs.Container) -> jobs.Queue:
        return jobs.Queue(await container.aget(awaitdb.Database))

    async def open_bus(container: svcs.Container) -> events.Bus:
        return events.Bus(db=await container.aget(awaitdb.Database))

    async def open_stream(container: svcs.Container) -> events.Stream:
        return events.Stream(await container.aget(awaitdb.Database))

    register_singleton(registry, jobs.Queue, open_queue)
    bus = register_singleton(registry, events.Bus, open_bus)
    stream = register_singleton(registry, events.Stream, open_stream)
    seen: list[object] = []
    async with svcs.Container(registry) as container:
        db, queue, the_bus, the_stream = await container.aget(
            awaitdb.Database, jobs.Queue, events.Bus, events.Stream
        )
        assert queue.db is db and the_stream.db is db
        the_bus.on("task.*", lambda event: seen.append(event.data))
        notify = queue.task(name="notify")(lambda task_id: None)
        await queue.ready()
        async with db.transaction():
            await notify.enqueue(task_id=1)
            await the_stream.publish("task.created", {"id": 1})
            await the_bus.emit("task.created", {"id": 1})  # delivered after COMMIT
        await the_bus.drain()
        assert seen == [{"id": 1}]
        assert (await queue.stats()).by_status["queued"] == 1
        assert (await the_stream.stats()).events == 1
    await registry.aclose()  # the stream and the bus closed first, then the database
    assert db.closed and not bus.opened and not stream.opened
