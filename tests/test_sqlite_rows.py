"""SQLite row path (issues 8 and 9): what a connection learns about a result stays its own.

The Record class of a statement's result is remembered per connection and checked against
each new cursor description, so the same SQL text on two databases with different tables, or
on one database whose table changed, always gives records with the right names and types.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import awaitdb
from awaitdb._sql import analyze

SQL = "SELECT * FROM shape"
FIRST = "CREATE TABLE shape (a INTEGER, b TEXT)"
SECOND = "CREATE TABLE shape (flag BOOLEAN, day DATE, price NUMERIC)"
VALUES = {"f": True, "d": dt.date(2026, 1, 2), "p": decimal.Decimal("1.25")}


def _check_first(record: awaitdb.Record | None) -> None:
    assert record is not None
    assert record.keys() == ("a", "b")
    assert dict(record) == {"a": 1, "b": "x"}


def _check_second(record: awaitdb.Record | None) -> None:
    assert record is not None
    assert record.keys() == ("flag", "day", "price")
    assert dict(record) == {
        "flag": True,
        "day": dt.date(2026, 1, 2),
        "price": decimal.Decimal("1.25"),
    }
    assert type(record["flag"]) is bool and type(record["price"]) is decimal.Decimal


def test_same_sql_on_two_sync_databases_keeps_each_ones_records(tmp_path: Path) -> None:
    one = awaitdb.connect_sync(f"sqlite:///{tmp_path / 'one.db'}")
    two = awaitdb.connect_sync(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        one.execute(FIRST)
        one.execute("INSERT INTO shape VALUES (1, 'x')")
        two.execute(SECOND)
        two.execute("INSERT INTO shape VALUES (:f, :d, :p)", VALUES)
        for _ in range(3):  # alternating: neither database's shape leaks into the other's
            _check_first(one.fetch_one(SQL))
            _check_second(two.fetch_one(SQL))
            [record] = one.fetch_all(SQL)
            _check_first(record)
            [record] = two.fetch_all(SQL)
            _check_second(record)
            assert one.fetch_val(SQL, column="b") == "x"
            assert two.fetch_val(SQL, column="price") == decimal.Decimal("1.25")
    finally:
        one.close()
        two.close()


async def test_same_sql_on_two_async_databases_keeps_each_ones_records(tmp_path: Path) -> None:
    one = await awaitdb.connect(f"sqlite:///{tmp_path / 'one.db'}")
    two = await awaitdb.connect(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        await one.execute(FIRST)
        await one.execute("INSERT INTO shape VALUES (1, 'x')")
        await two.execute(SECOND)
        await two.execute("INSERT INTO shape VALUES (:f, :d, :p)", VALUES)
        for _ in range(3):
            _check_first(await one.fetch_one(SQL))
            _check_second(await two.fetch_one(SQL))
            [record] = await one.fetch_all(SQL)
            _check_first(record)
            [record] = await two.fetch_all(SQL)
            _check_second(record)
    finally:
        await one.close()
        await two.close()


def test_a_changed_table_gives_new_names_and_types_on_the_same_connection(
    sqlite_url: str,
) -> None:
    """The table is rebuilt with other names and types between two runs of one SQL text."""
    db = awaitdb.connect_sync(sqlite_url, readers=1)
    try:
        db.execute(FIRST)
        db.execute("INSERT INTO shape VALUES (1, 'x')")
        _check_first(db.fetch_one(SQL))
        db.execute("DROP TABLE shape")
        db.execute(SECOND)
        db.execute("INSERT INTO shape VALUES (1, '2026-01-02', '1.25')")
        _check_second(db.fetch_one(SQL))
        [record] = db.fetch_all(SQL)
        _check_second(record)
        db.execute("ALTER TABLE shape RENAME COLUMN flag TO done")
        record = db.fetch_one(SQL)
        assert record is not None and record.keys() == ("done", "day", "price")
        assert record["done"] is True
    finally:
        db.close()


def test_converters_keep_unparsable_text_and_parse_each_type(sqlite_url: str) -> None:
    """Each declared type's converter in one call: a value it cannot parse comes back as text."""
    db = awaitdb.connect_sync(sqlite_url)
    try:
        db.execute(
            "CREATE TABLE typed (b BOOLEAN, ts TIMESTAMP, tz TIMESTAMPTZ, d DATE, n NUMERIC, "
            "u UUID, j JSON)"
        )
        db.execute(
            "INSERT INTO typed VALUES ('yes', '2026-01-02 03:04:05', '2026-01-02 03:04:05', "
            "'2026-01-02 00:00:00', '2.50', '12345678-1234-5678-1234-567812345678', "
            "'{\"k\": [1]}')"
        )
        db.execute(
            "INSERT INTO typed VALUES ('maybe', 'noon', 'later', 'someday', 'lots', 'nope', "
            "'{broken')"
        )
        good, bad = db.fetch_all("SELECT * FROM typed ORDER BY rowid")
        assert good["b"] is True
        assert good["ts"] == dt.datetime(2026, 1, 2, 3, 4, 5)
        assert good["tz"] == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        assert good["d"] == dt.date(2026, 1, 2)
        assert good["n"] == decimal.Decimal("2.50")
        assert str(good["u"]) == "12345678-1234-5678-1234-567812345678"
        assert good["j"] == {"k": [1]}
        assert tuple(bad) == ("maybe", "noon", "later", "someday", "lots", "nope", "{broken")
    finally:
        db.close()


async def test_nothing_is_learned_on_the_shared_statement_analysis(tmp_path: Path) -> None:
    """Issue 8: the Record class lives with the connection, not on the per-process ``SqlInfo``."""
    sync = awaitdb.connect_sync(f"sqlite:///{tmp_path / 'one.db'}")
    adb = await awaitdb.connect(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        sync.execute(FIRST)
        sync.execute("INSERT INTO shape VALUES (1, 'x')")
        await adb.execute(FIRST)
        await adb.execute("INSERT INTO shape VALUES (1, 'x')")
        _check_first(sync.fetch_one(SQL))
        _check_first(await adb.fetch_one(SQL))
        assert len(sync.fetch_all(SQL)) == len(await adb.fetch_all(SQL)) == 1
        assert not hasattr(analyze(SQL), "shape")  # learned per connection, never here
    finally:
        sync.close()
        await adb.close()
