"""Conformance: query methods, parameters, records, iterate, timeouts, closed databases.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

import pytest

import awaitdb

from .helpers_async import settled_in_use


async def _users(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, team TEXT)")
    await adb.execute_many(
        "INSERT INTO users (id, name, team) VALUES (:id, :name, :team)",
        [
            {"id": 1, "name": "ada", "team": "core"},
            {"id": 2, "name": "bob", "team": "core"},
            {"id": 3, "name": "cy", "team": None},
        ],
    )


async def test_execute_returns_rowcount(adb: awaitdb.Database) -> None:
    await _users(adb)
    assert (
        await adb.execute("UPDATE users SET team = :t WHERE team = :old", {"t": "x", "old": "core"})
        == 2
    )
    assert await adb.execute("DELETE FROM users WHERE id = :id", {"id": 99}) == 0
    assert await adb.execute("CREATE TABLE other (x INTEGER)") == 0


async def test_execute_many_returns_total(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (x INTEGER)")
    n = await adb.execute_many("INSERT INTO t (x) VALUES (:x)", [{"x": i} for i in range(10)])
    assert n == 10
    assert await adb.fetch_val("SELECT count(*) FROM t") == 10


async def test_fetch_one_all_val(adb: awaitdb.Database) -> None:
    await _users(adb)
    rec = await adb.fetch_one("SELECT id, name FROM users WHERE id = :id", {"id": 2})
    assert rec is not None and rec["name"] == "bob" and rec[0] == 2
    assert await adb.fetch_one("SELECT * FROM users WHERE id = :id", {"id": 42}) is None
    rows = await adb.fetch_all("SELECT id FROM users ORDER BY id")
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert await adb.fetch_all("SELECT id FROM users WHERE id > 100") == []
    assert await adb.fetch_val("SELECT count(*) FROM users") == 3
    assert await adb.fetch_val("SELECT id, name FROM users WHERE id = 1", column="name") == "ada"
    assert await adb.fetch_val("SELECT id, name FROM users WHERE id = 1", column=1) == "ada"
    assert await adb.fetch_val("SELECT id FROM users WHERE id = 100") is None


async def test_fetch_val_bad_column(adb: awaitdb.Database) -> None:
    with pytest.raises(awaitdb.InterfaceError, match="no column 'nope'"):
        await adb.fetch_val("SELECT 1 AS one", column="nope")
    with pytest.raises(awaitdb.InterfaceError, match="out of range"):
        await adb.fetch_val("SELECT 1 AS one", column=3)


async def test_record_is_mapping_and_tuple(adb: awaitdb.Database) -> None:
    await _users(adb)
    rec = await adb.fetch_one("SELECT id, name, team FROM users WHERE id = 1")
    assert rec is not None
    assert isinstance(rec, awaitdb.Record)
    assert rec.keys() == ("id", "name", "team")
    assert rec.values() == (1, "ada", "core")
    assert list(rec.items()) == [("id", 1), ("name", "ada"), ("team", "core")]
    assert dict(rec) == {"id": 1, "name": "ada", "team": "core"}
    assert len(rec) == 3
    assert list(rec) == [1, "ada", "core"]
    values: tuple[Any, ...] = (1, "ada", "core")  # a variable: a literal would narrow rec
    assert rec == values
    assert "name" in rec and "missing" not in rec
    assert rec.get("missing", 7) == 7
    assert rec[-1] == "core" and rec[0:2] == (1, "ada")
    with pytest.raises(KeyError):
        rec["missing"]
    assert "name='ada'" in repr(rec)


@dataclasses.dataclass
class User:
    id: int
    name: str
    team: str | None = None


class UserRow(NamedTuple):
    id: int
    name: str


async def test_as_builds_models(adb: awaitdb.Database) -> None:
    await _users(adb)
    users = await adb.fetch_all("SELECT id, name, team FROM users ORDER BY id", as_=User)
    assert users[0] == User(1, "ada", "core")
    one = await adb.fetch_one("SELECT id, name FROM users WHERE id = 2", as_=UserRow)
    assert one == UserRow(2, "bob")
    assert await adb.fetch_one("SELECT id, name FROM users WHERE id = 9", as_=User) is None
    with pytest.raises(awaitdb.InterfaceError, match="cannot build User"):
        await adb.fetch_one("SELECT id FROM users WHERE id = 1", as_=User)


async def test_named_parameters_are_bound_not_interpolated(adb: awaitdb.Database) -> None:
    await _users(adb)
    evil = "x'); DROP TABLE users; --"
    await adb.execute("INSERT INTO users (id, name) VALUES (:id, :name)", {"id": 10, "name": evil})
    assert await adb.fetch_val("SELECT name FROM users WHERE id = 10") == evil
    # placeholders inside literals, comments and casts are not parameters
    sql = "SELECT ':nope' AS a, /* :nor */ CAST(:real AS INTEGER) AS b -- :this\n"
    rec = await adb.fetch_one(sql, {"real": 5})
    assert rec is not None and rec["a"] == ":nope" and rec["b"] == 5
    # the same name twice binds one value
    assert await adb.fetch_val("SELECT CAST(:v AS INTEGER) + CAST(:v AS INTEGER)", {"v": 2}) == 4


async def test_missing_and_extra_parameters(adb: awaitdb.Database) -> None:
    with pytest.raises(awaitdb.InterfaceError, match=":b"):
        await adb.fetch_val("SELECT :a + :b", {"a": 1})
    with pytest.raises(awaitdb.InterfaceError, match="unexpected parameter.*:c"):
        await adb.fetch_val("SELECT :a", {"a": 1, "c": 2})
    with pytest.raises(awaitdb.InterfaceError, match=":a"):
        await adb.fetch_val("SELECT :a")
    with pytest.raises(awaitdb.InterfaceError, match="mapping"):
        await adb.fetch_val("SELECT :a", cast(Any, [1]))  # wrong on purpose
    with pytest.raises(awaitdb.InterfaceError, match=":a"):
        await adb.execute_many("SELECT :a", [{"a": 1}, {}])


async def test_parameter_names_checked_on_every_shape(adb: awaitdb.Database) -> None:
    # One name, none, several: each checked exactly (the one-name check has a fast path).
    for params, problem in (({"b": 1}, "missing parameter.*:a.*unexpected.*:b"), ({}, ":a")):
        with pytest.raises(awaitdb.InterfaceError, match=problem):
            await adb.fetch_val("SELECT :a", params)
    with pytest.raises(awaitdb.InterfaceError, match="unexpected parameter.*:x"):
        await adb.fetch_val("SELECT 1", {"x": 1})
    assert await adb.fetch_val("SELECT 1") == 1
    assert await adb.fetch_val("SELECT 1", {}) == 1
    assert await adb.fetch_val("SELECT :a", {"a": "seven"}) == "seven"
    with pytest.raises(awaitdb.InterfaceError, match="unexpected parameter.*:c"):
        await adb.fetch_val("SELECT :a + :b", {"a": 1, "b": 2, "c": 3})


async def test_iterate_streams_in_batches(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE big (x INTEGER)")
    await adb.execute_many("INSERT INTO big (x) VALUES (:x)", [{"x": i} for i in range(1234)])
    seen = [r["x"] async for r in adb.iterate("SELECT x FROM big ORDER BY x", batch_size=100)]
    assert seen == list(range(1234))
    empty = [r async for r in adb.iterate("SELECT x FROM big WHERE x < 0")]
    assert empty == []


async def test_iterate_stops_early_and_returns_the_connection(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE big (x INTEGER)")
    await adb.execute_many("INSERT INTO big (x) VALUES (:x)", [{"x": i} for i in range(100)])
    async with adb.iterate("SELECT x FROM big ORDER BY x", batch_size=10) as rows:
        async for rec in rows:
            if rec["x"] == 15:
                break
    assert await settled_in_use(adb) == 0
    with pytest.raises(awaitdb.InterfaceError, match="batch_size"):
        adb.iterate("SELECT 1", batch_size=0)


async def test_issue8_iterate_runs_a_with_that_writes(adb: awaitdb.Database) -> None:
    # A WITH whose body inserts is a write: iterate streams it from the writer, not a reader
    # (SQLite refused it on a read-only connection, PostgreSQL in a READ ONLY transaction).
    await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    sql = (
        "WITH x AS (SELECT 1 AS v UNION ALL SELECT 2) "
        "INSERT INTO t (id, v) SELECT v, v * 10 FROM x RETURNING id"
    )
    assert sorted([r["id"] async for r in adb.iterate(sql)]) == [1, 2]
    assert await adb.fetch_val("SELECT sum(v) FROM t") == 30
    assert await settled_in_use(adb) == 0


async def test_issue8_iterate_of_a_select_calling_a_writing_function(
    adb: awaitdb.Database, backend_name: str
) -> None:
    # A SELECT may write through a function: the cursor's transaction is not READ ONLY.
    if backend_name != "postgresql":
        pytest.skip("SQL functions that write are PostgreSQL's")
    await adb.execute("CREATE TABLE hits (v INTEGER)")
    await adb.execute(
        "CREATE FUNCTION hit() RETURNS integer LANGUAGE sql AS "
        "$$ INSERT INTO hits VALUES (7) RETURNING v $$"
    )
    assert [r[0] async for r in adb.iterate("SELECT hit()")] == [7]
    assert await adb.fetch_val("SELECT count(*) FROM hits") == 1
    with pytest.raises(awaitdb.DatabaseError, match="read-only"):
        async with adb.transaction(readonly=True):  # asked for: still read-only
            [r async for r in adb.iterate("SELECT hit()")]


async def test_defect05_iterate_timeout_bounds_the_iteration(
    adb: awaitdb.Database, dialect: Any
) -> None:
    # The first batch alone runs past the timeout: cancelled on the database.
    with pytest.raises(awaitdb.QueryTimeout):
        async for _ in adb.iterate(dialect.slow_sql, timeout=0.3):
            pass
    assert await adb.fetch_val("SELECT 1") == 1
    assert await settled_in_use(adb) == 0
    # Every batch is quick but together they run past it: the budget covers the whole stream.
    if dialect.name == "postgresql":
        slow_rows, total = "SELECT pg_sleep(0.05) FROM generate_series(1, 200)", 200
    else:
        slow_rows, total = (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000) "
            "SELECT x FROM c WHERE x % 20000 = 0",
            25000,
        )
    seen = 0  # 2 s: room for a first row on a loaded machine (0.5 s saw none under coverage)
    with pytest.raises(awaitdb.QueryTimeout):
        async for _ in adb.iterate(slow_rows, batch_size=1, timeout=2.0):
            seen += 1
    assert 0 < seen < total
    assert await adb.fetch_val("SELECT 1") == 1
    assert await settled_in_use(adb) == 0


async def test_timeout_cancels_the_query(adb: awaitdb.Database, dialect: Any) -> None:
    with pytest.raises(awaitdb.QueryTimeout):
        await adb.fetch_val(dialect.slow_sql, timeout=0.2)
    assert await adb.fetch_val("SELECT 1") == 1
    assert await settled_in_use(adb) == 0


async def test_statement_timeout_option(
    aconnect: Callable[..., Awaitable[awaitdb.Database]], dialect: Any
) -> None:
    db = await aconnect(statement_timeout=0.2)
    with pytest.raises(awaitdb.QueryTimeout):
        await db.fetch_val(dialect.slow_sql)


async def test_closed_database_refuses_work(
    aconnect: Callable[..., Awaitable[awaitdb.Database]],
) -> None:
    db = await aconnect()
    await db.close()
    assert db.closed
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        await db.fetch_val("SELECT 1")
    with pytest.raises(awaitdb.InterfaceError, match="closed"):
        async with db.transaction():
            pass
    await db.close()  # closing twice is fine


async def test_stats_snapshot(adb: awaitdb.Database) -> None:
    await adb.fetch_val("SELECT 1")
    with pytest.raises(awaitdb.ProgrammingError):
        await adb.fetch_val("SELECT * FROM no_such_table")
    stats = adb.stats()
    assert stats.queries >= 2 and stats.query_errors >= 1
    assert stats.pool_size >= 1 and stats.pool_in_use == 0 and stats.pool_waiting == 0
    assert stats.query_p99_ms >= stats.query_p50_ms >= 0
    assert set(stats.as_dict()) >= {"pool_size", "pool_idle", "acquisitions", "slow_queries"}


async def test_slow_query_is_logged(
    aconnect: Callable[..., Awaitable[awaitdb.Database]],
    dialect: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = await aconnect(slow_query_ms=0)
    with caplog.at_level("WARNING", logger="awaitdb"):
        await db.fetch_val("SELECT 42")
    assert any("slow query" in r.message and "SELECT 42" in r.message for r in caplog.records)
    assert db.stats().slow_queries >= 1


async def test_repr_and_backend_name(adb: awaitdb.Database) -> None:
    assert "Database" in repr(adb)
    assert adb.backend in {"sqlite", "postgresql"}


async def test_execute_many_is_atomic(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    with pytest.raises(awaitdb.UniqueViolation):
        await adb.execute_many("INSERT INTO t (id) VALUES (:i)", [{"i": 1}, {"i": 2}, {"i": 1}])
    assert await adb.fetch_val("SELECT count(*) FROM t") == 0
    async with adb.transaction():
        await adb.execute("INSERT INTO t (id) VALUES (10)")
        with pytest.raises(awaitdb.UniqueViolation):
            async with adb.transaction():
                await adb.execute_many("INSERT INTO t (id) VALUES (:i)", [{"i": 3}, {"i": 3}])
    assert await adb.fetch_val("SELECT count(*) FROM t") == 1
