"""Conformance: list parameters (``IN :ids``), on both backends and both faces.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

import awaitdb
from awaitdb._sql import analyze


async def _items(adb: awaitdb.Database, dialect: Any) -> list[uuid.UUID]:
    keys = [uuid.UUID(int=i) for i in range(1, 6)]
    key_type = dialect.types["uuid"]
    await adb.execute(
        f"CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, key {key_type})"
    )
    await adb.execute_many(
        "INSERT INTO items (id, name, key) VALUES (:id, :name, :key)",
        [{"id": i, "name": f"n{i}", "key": keys[i - 1]} for i in range(1, 6)],
    )
    return keys


async def test_in_list_of_ints_strings_uuids(adb: awaitdb.Database, dialect: Any) -> None:
    keys = await _items(adb, dialect)
    sql = "SELECT id FROM items WHERE id IN :ids ORDER BY id"
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": [4, 2]})] == [2, 4]
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": (1, 3, 5)})] == [1, 3, 5]
    by_name = "SELECT id FROM items WHERE name in :names ORDER BY id"
    assert [r["id"] for r in await adb.fetch_all(by_name, {"names": ["n5", "n1", "zz"]})] == [1, 5]
    by_key = "SELECT id FROM items WHERE key IN :keys ORDER BY id"
    assert [r["id"] for r in await adb.fetch_all(by_key, {"keys": [keys[2], keys[0]]})] == [1, 3]
    assert await adb.fetch_val("SELECT count(*) FROM items WHERE id IN :ids", {"ids": [9]}) == 0
    streamed = [r["id"] async for r in adb.iterate(sql, {"ids": [5, 1]}, batch_size=1)]
    assert streamed == [1, 5]


async def test_not_in_list_and_empty_lists(adb: awaitdb.Database, dialect: Any) -> None:
    await _items(adb, dialect)
    sql = "SELECT id FROM items WHERE id NOT IN :ids ORDER BY id"
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": [1, 2, 3]})] == [4, 5]
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": []})] == [1, 2, 3, 4, 5]
    empty = "SELECT id FROM items WHERE id IN :ids"
    assert await adb.fetch_all(empty, {"ids": []}) == []
    assert await adb.execute("DELETE FROM items WHERE id IN :ids", {"ids": []}) == 0
    assert await adb.execute("DELETE FROM items WHERE id IN :ids", {"ids": [1, 5]}) == 2


async def test_in_list_many_lengths_share_few_statements(
    adb: awaitdb.Database, dialect: Any
) -> None:
    await _items(adb, dialect)
    sql = "SELECT count(*) FROM items WHERE id IN :ids AND name <> :skip"
    for n in range(0, 70):
        ids = list(range(1, n + 1))
        assert await adb.fetch_val(sql, {"ids": ids, "skip": "n2"}) == len(
            [i for i in ids if i <= 5 and i != 2]
        )
    async with adb.transaction() as tx:
        assert await tx.fetch_val(sql, {"ids": [1, 2, 3], "skip": "n1"}) == 2
    # 70 list lengths, padded to a handful of statement shapes (0, 1, 2, 4, ..., 128)
    lists = analyze(sql).lists
    assert lists is not None and len(lists.expanded) <= 9


async def test_in_parenthesised_list_is_refused(adb: awaitdb.Database, dialect: Any) -> None:
    await _items(adb, dialect)
    with pytest.raises(awaitdb.InterfaceError, match="IN :ids"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN (:ids)", {"ids": [1, 2]})
    with pytest.raises(awaitdb.InterfaceError, match="IN :ids"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN ( :ids )", {"ids": (1,)})
    # one scalar in parentheses stays what it always was
    rows = await adb.fetch_all("SELECT id FROM items WHERE id IN (:id)", {"id": 2})
    assert [r["id"] for r in rows] == [2]


async def test_list_parameter_must_be_a_list(adb: awaitdb.Database, dialect: Any) -> None:
    await _items(adb, dialect)
    with pytest.raises(awaitdb.InterfaceError, match="list or tuple"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN :ids", {"ids": 3})
    with pytest.raises(awaitdb.InterfaceError, match="execute_many"):
        await adb.execute_many("DELETE FROM items WHERE id IN :ids", [{"ids": [1]}])
    # text that only looks like it stays untouched
    assert await adb.fetch_val("SELECT 'x IN :ids' AS t") == "x IN :ids"


async def test_long_lists_of_any_length(adb: awaitdb.Database, dialect: Any) -> None:
    # review of issue 13: 40,000 values stalled the loop for 88 s on SQLite (named placeholders
    # resolve in quadratic time) and 131,073 values were padded past SQLite's variable limit.
    await _items(adb, dialect)
    sql = "SELECT count(*) FROM items WHERE id IN :ids"
    assert await adb.fetch_val(sql, {"ids": list(range(40_000))}) == 5
    assert await adb.fetch_val(sql, {"ids": list(range(3, 131_076))}) == 3
    not_in = "SELECT count(*) FROM items WHERE id NOT IN :ids AND name <> :skip"
    assert await adb.fetch_val(not_in, {"ids": list(range(2, 40_002)), "skip": "zz"}) == 1


async def test_list_in_a_parenthesised_list_is_refused(adb: awaitdb.Database, dialect: Any) -> None:
    # review of issue 13: a list anywhere inside ``IN (...)`` silently matched nothing on SQLite.
    await _items(adb, dialect)
    for sql in (
        "SELECT id FROM items WHERE id IN (:ids, :extra)",
        "SELECT id FROM items WHERE id IN ( :ids /*c*/ ) AND id <> :extra",
        "SELECT id FROM items WHERE id IN (:extra, abs(:ids))",
    ):
        with pytest.raises(awaitdb.InterfaceError, match=r":ids.*IN :ids"):
            await adb.fetch_all(sql, {"ids": [2, 3], "extra": 9})
    rows = await adb.fetch_all("SELECT id FROM items WHERE id IN (:a, :b)", {"a": 1, "b": 3})
    assert [r["id"] for r in rows] == [1, 3]
    sub = "SELECT id FROM items WHERE id IN (SELECT id FROM items WHERE id IN :ids)"
    assert [r["id"] for r in await adb.fetch_all(sub, {"ids": [4]})] == [4]


async def test_list_name_reused_elsewhere_is_refused(adb: awaitdb.Database, dialect: Any) -> None:
    await _items(adb, dialect)
    with pytest.raises(awaitdb.InterfaceError, match=r":ids.*elsewhere"):
        await adb.fetch_all(
            "SELECT id FROM items WHERE id IN :ids OR :ids IS NULL", {"ids": [1, 2]}
        )


async def test_in_list_spelling_is_robust(adb: awaitdb.Database, dialect: Any) -> None:
    await _items(adb, dialect)
    sql = "SELECT id FROM items WHERE id NOT /*c*/ IN\n  :ids AND id in/**/:ids2 ORDER BY id"
    rows = await adb.fetch_all(sql, {"ids": [1, 2], "ids2": [2, 3, 4]})
    assert [r["id"] for r in rows] == [3, 4]
    # a list still binds as JSON where a single value is expected (a JSON column)
    json_type = dialect.types["json"]
    await adb.execute(f"CREATE TABLE docs (id INTEGER PRIMARY KEY, tags {json_type})")
    await adb.execute("INSERT INTO docs (id, tags) VALUES (1, :tags)", {"tags": ["a", "b"]})
    assert await adb.fetch_val("SELECT tags FROM docs WHERE id IN :ids", {"ids": [1]}) == [
        "a",
        "b",
    ]


async def test_any_and_all_take_a_list_on_postgresql(
    adb: awaitdb.Database, backend_name: str
) -> None:
    # review of issue 13: ``= ANY(:ids)`` worked on async PostgreSQL but not on sync.
    if backend_name != "postgresql":
        pytest.skip("= ANY() / <> ALL() are PostgreSQL syntax")
    sql = "SELECT count(*) FROM generate_series(1, 5) g WHERE g = ANY(:ids) AND g <> ALL(:no)"
    assert await adb.fetch_val(sql, {"ids": [1, 2, 3], "no": (2,)}) == 2


async def test_in_list_values_bind_like_single_values(adb: awaitdb.Database, dialect: Any) -> None:
    # every element is adapted exactly as a single parameter of its type would be
    t = dialect.types
    await adb.execute(
        f"CREATE TABLE vals (id INTEGER PRIMARY KEY, b {t['bytes']}, f {t['bool']}, "
        f"d {t['decimal']}, at {t['datetime_naive']})"
    )
    rows = [
        {"id": i, "b": bytes([i, 0, 255]), "f": i % 2 == 0, "d": Decimal(f"{i}.25"), "at": at}
        for i, at in ((1, datetime(2026, 1, 1, 12)), (2, datetime(2026, 1, 2, 12)))
    ]
    await adb.execute_many("INSERT INTO vals VALUES (:id, :b, :f, :d, :at)", rows)
    for column, values, expected in (
        ("b", [bytes([2, 0, 255]), b"x"], 2),
        ("f", [True], 2),
        ("d", [Decimal("1.25"), Decimal("9")], 1),
        ("at", [datetime(2026, 1, 2, 12)], 2),
    ):
        sql = f"SELECT id FROM vals WHERE {column} IN :v"
        assert await adb.fetch_val(sql, {"v": values}) == expected, column
