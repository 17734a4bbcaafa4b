"""Conformance: bad input gets one clear ``InterfaceError`` on every backend and both faces.

Issue 7's defects 2 (multi-statement strings), 3 (timeouts), 10 (raw exceptions) and 14
(parameter count). Written once against the async face; the sync twin is generated.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import awaitdb

from .helpers_async import settled_in_use


async def test_defect02_multi_statement_strings_refused_on_every_face(
    adb: awaitdb.Database,
) -> None:
    await adb.execute("CREATE TABLE t (x INTEGER)")
    for sql in [
        "SELECT 1; SET search_path TO nowhere; SET statement_timeout = 50",
        "INSERT INTO t (x) VALUES (1); DELETE FROM t",
        "SELECT 1;SELECT 2",
        "SELECT 1; /* comment */ SELECT 2 -- more",
    ]:
        for call in (adb.execute, adb.fetch_all, adb.fetch_one, adb.fetch_val):
            with pytest.raises(awaitdb.InterfaceError, match="more than one statement"):
                await call(sql)
    # Semicolons in literals, comments and a trailing semicolon are still one statement.
    assert await adb.fetch_val("SELECT ';' || 'a;b' -- x; y") == ";a;b"
    assert await adb.fetch_val("SELECT 2; -- trailing\n") == 2
    assert await adb.execute("INSERT INTO t (x) VALUES (1);") == 1
    async with adb.transaction() as tx:
        with pytest.raises(awaitdb.InterfaceError, match="more than one statement"):
            await tx.execute("INSERT INTO t (x) VALUES (2); INSERT INTO t (x) VALUES (3)")
    # Nothing ran and the session is untouched for the next caller.
    assert await adb.fetch_val("SELECT count(*) FROM t") == 1
    assert await settled_in_use(adb) == 0


_BAD_TIMEOUTS: list[Any] = [math.nan, math.inf, -math.inf, -1, "5", True, [1]]


async def test_defect03_bad_per_call_timeouts_refused(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (x INTEGER)")
    for bad in _BAD_TIMEOUTS:
        for call in (adb.execute, adb.fetch_all, adb.fetch_one, adb.fetch_val):
            with pytest.raises(awaitdb.InterfaceError, match="timeout"):
                await call("SELECT 1", timeout=bad)
        with pytest.raises(awaitdb.InterfaceError, match="timeout"):
            await adb.execute_many("INSERT INTO t (x) VALUES (:x)", [{"x": 1}], timeout=bad)
        with pytest.raises(awaitdb.InterfaceError, match="timeout"):
            adb.transaction(timeout=bad)
        with pytest.raises(awaitdb.InterfaceError, match="timeout"):
            adb.iterate("SELECT 1", timeout=bad)
    assert await adb.fetch_val("SELECT 1", timeout=0.0 + 5) == 1
    assert await adb.fetch_val("SELECT 1", timeout=5) == 1
    assert await adb.fetch_val("SELECT count(*) FROM t") == 0


async def test_defect03_bad_timeout_options_refused(
    aconnect: Callable[..., Awaitable[awaitdb.Database]],
) -> None:
    options = ["acquire_timeout", "statement_timeout", "max_idle", "max_lifetime", "slow_query_ms"]
    for name in options:
        for bad in ["nan", "inf", "-inf", "-1", math.nan, math.inf, True, "soon", [1]]:
            with pytest.raises(awaitdb.InterfaceError, match=name):
                await aconnect(**{name: bad})
    db = await aconnect(statement_timeout="2.5", acquire_timeout=3)
    assert await db.fetch_val("SELECT 1") == 1


async def test_defect10_bad_sql_values_raise_interface_error(adb: awaitdb.Database) -> None:
    for sql in ["", "   ", "-- only a comment", "/* only */  -- comments\n"]:
        for call in (adb.execute, adb.fetch_all, adb.fetch_one, adb.fetch_val):
            with pytest.raises(awaitdb.InterfaceError, match="no SQL statement"):
                await call(sql)
    bad: Any  # wrong types on purpose
    for bad in [["SELECT 1"], b"SELECT 1", None, 42]:
        for call in (adb.execute, adb.fetch_all, adb.fetch_val):
            with pytest.raises(awaitdb.InterfaceError, match="SQL must be a string"):
                await call(bad)
        with pytest.raises(awaitdb.InterfaceError, match="SQL must be a string"):
            await adb.execute_many(bad, [])
    assert await adb.fetch_val("SELECT 1") == 1


async def test_defect14_more_than_32767_parameters_refused_early(adb: awaitdb.Database) -> None:
    names = [f"p{i}" for i in range(40_000)]
    sql = "SELECT " + " + ".join(f":{n}" for n in names)
    with pytest.raises(awaitdb.InterfaceError, match="32,767"):
        await adb.fetch_val(sql, dict.fromkeys(names, 1))
    assert await adb.fetch_val("SELECT 1") == 1


async def test_defect16_big_sql_text_gives_the_same_answer(adb: awaitdb.Database) -> None:
    # Texts over BIG_SQL are scanned in a worker thread on the async face: same result.
    literal = "it''s ; a :fake param -- not a comment /* nor this */ " * 40_000
    sql = f"SELECT :p + 0 * length('{literal}') AS v, :q AS w; -- the end"
    assert len(sql) > 2_000_000
    row = await adb.fetch_one(sql, {"p": 41, "q": "x"})
    assert row is not None and (row["v"], row["w"]) == (41, "x")
    with pytest.raises(awaitdb.InterfaceError, match="more than one statement"):
        await adb.execute(sql.replace("-- the end", "SELECT 2"), {"p": 1, "q": "y"})
