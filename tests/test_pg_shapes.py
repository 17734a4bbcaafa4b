"""PostgreSQL keeps result shapes per connection, never on the shared ``SqlInfo`` (issue 8).

The same SQL text can give different columns on two connections (temporary tables, search
paths, two databases): each connection remembers its own Record class for a text.
"""

from __future__ import annotations

import awaitdb
from awaitdb._sql import SqlInfo, analyze

SQL = "SELECT * FROM pg_shape_probe"
FIRST = "CREATE TEMP TABLE pg_shape_probe (a INTEGER, b TEXT)"
SECOND = "CREATE TEMP TABLE pg_shape_probe (flag BOOLEAN, price NUMERIC, day DATE)"


def _analysis(info: SqlInfo) -> dict[str, object]:
    return {name: getattr(info, name) for name in SqlInfo.__slots__ if name != "texts"}


async def test_same_sql_on_two_async_connections_keeps_each_ones_records(pg_url: str) -> None:
    before = _analysis(analyze(SQL))
    db, other = await awaitdb.connect(pg_url), await awaitdb.connect(pg_url)
    try:
        async with db.connection() as one, other.connection() as two:
            await one.execute(FIRST)
            await one.execute("INSERT INTO pg_shape_probe VALUES (1, 'x')")
            await two.execute(SECOND)
            await two.execute("INSERT INTO pg_shape_probe VALUES (true, 1.25, '2024-01-02')")
            for _ in range(3):  # alternating: neither connection's shape leaks into the other's
                first = await one.fetch_one(SQL)
                second = await two.fetch_one(SQL)
                assert first is not None and second is not None
                assert list(first.keys()) == ["a", "b"] and first["b"] == "x"
                assert list(second.keys()) == ["flag", "price", "day"] and second["flag"] is True
                [record] = await one.fetch_all(SQL)
                assert list(record.keys()) == ["a", "b"]
                [record] = await two.fetch_all(SQL)
                assert list(record.keys()) == ["flag", "price", "day"]
    finally:
        await db.close()
        await other.close()
    assert _analysis(analyze(SQL)) == before
    assert not hasattr(analyze(SQL), "shape")


def test_same_sql_on_two_sync_connections_keeps_each_ones_records(pg_url: str) -> None:
    before = _analysis(analyze(SQL))
    db, other = awaitdb.connect_sync(pg_url), awaitdb.connect_sync(pg_url)
    try:
        with db.connection() as one, other.connection() as two:
            one.execute(FIRST)
            one.execute("INSERT INTO pg_shape_probe VALUES (1, 'x')")
            two.execute(SECOND)
            two.execute("INSERT INTO pg_shape_probe VALUES (true, 1.25, '2024-01-02')")
            for _ in range(3):
                first = one.fetch_one(SQL)
                second = two.fetch_one(SQL)
                assert first is not None and second is not None
                assert list(first.keys()) == ["a", "b"] and first["b"] == "x"
                assert list(second.keys()) == ["flag", "price", "day"] and second["flag"] is True
                [record] = one.fetch_all(SQL)
                assert list(record.keys()) == ["a", "b"]
                [record] = two.fetch_all(SQL)
                assert list(record.keys()) == ["flag", "price", "day"]
    finally:
        db.close()
        other.close()
    assert _analysis(analyze(SQL)) == before


def test_analysis_takes_no_new_attributes() -> None:
    info = analyze("SELECT 1")
    try:
        info.shape = 1  # type: ignore[attr-defined]
    except AttributeError:
        return
    raise AssertionError("SqlInfo accepted a new attribute: something could learn on it")
