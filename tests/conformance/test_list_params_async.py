"""Conformance: list parameters (``IN :ids``), on both backends and both faces.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import awaitdb
from awaitdb._sql import analyze


async def _items(adb: Any, dialect: Any) -> list[uuid.UUID]:
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


async def test_in_list_of_ints_strings_uuids(adb: Any, dialect: Any) -> None:
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


async def test_not_in_list_and_empty_lists(adb: Any, dialect: Any) -> None:
    await _items(adb, dialect)
    sql = "SELECT id FROM items WHERE id NOT IN :ids ORDER BY id"
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": [1, 2, 3]})] == [4, 5]
    assert [r["id"] for r in await adb.fetch_all(sql, {"ids": []})] == [1, 2, 3, 4, 5]
    empty = "SELECT id FROM items WHERE id IN :ids"
    assert await adb.fetch_all(empty, {"ids": []}) == []
    assert await adb.execute("DELETE FROM items WHERE id IN :ids", {"ids": []}) == 0
    assert await adb.execute("DELETE FROM items WHERE id IN :ids", {"ids": [1, 5]}) == 2


async def test_in_list_many_lengths_share_few_statements(adb: Any, dialect: Any) -> None:
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


async def test_in_parenthesised_list_is_refused(adb: Any, dialect: Any) -> None:
    await _items(adb, dialect)
    with pytest.raises(awaitdb.InterfaceError, match="IN :ids"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN (:ids)", {"ids": [1, 2]})
    with pytest.raises(awaitdb.InterfaceError, match="IN :ids"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN ( :ids )", {"ids": (1,)})
    # one scalar in parentheses stays what it always was
    rows = await adb.fetch_all("SELECT id FROM items WHERE id IN (:id)", {"id": 2})
    assert [r["id"] for r in rows] == [2]


async def test_list_parameter_must_be_a_list(adb: Any, dialect: Any) -> None:
    await _items(adb, dialect)
    with pytest.raises(awaitdb.InterfaceError, match="list or tuple"):
        await adb.fetch_all("SELECT id FROM items WHERE id IN :ids", {"ids": 3})
    with pytest.raises(awaitdb.InterfaceError, match="execute_many"):
        await adb.execute_many("DELETE FROM items WHERE id IN :ids", [{"ids": [1]}])
    # text that only looks like it stays untouched
    assert await adb.fetch_val("SELECT 'x IN :ids' AS t") == "x IN :ids"
