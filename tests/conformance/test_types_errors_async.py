"""Conformance: every row of the type table and every class of the error tree.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest

import awaitdb

AWARE = dt.datetime(2024, 5, 17, 13, 45, 30, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))

TYPE_TABLE = [
    ("int", 42),
    ("int", -(2**63)),
    ("float", 2.5),
    ("str", "héllo ☃"),
    ("bytes", b"\x00\xffbinary"),
    ("bool", True),
    ("bool", False),
    ("datetime_aware", AWARE),
    ("datetime_naive", dt.datetime(2024, 5, 17, 13, 45, 30, 123456)),
    ("date", dt.date(2024, 2, 29)),
    ("decimal", decimal.Decimal("12345.6789")),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("json", {"a": [1, 2, {"b": None}], "c": "d"}),
    ("json", [1, "two", 3.5]),
]


@pytest.mark.parametrize(
    ("row", "value"), TYPE_TABLE, ids=[f"{r}-{i}" for i, (r, _) in enumerate(TYPE_TABLE)]
)
async def test_type_round_trip(adb: awaitdb.Database, dialect: Any, row: str, value: Any) -> None:
    await adb.execute(f"CREATE TABLE t (v {dialect.types[row]})")
    await adb.execute("INSERT INTO t (v) VALUES (:v)", {"v": value})
    back = await adb.fetch_val("SELECT v FROM t")
    assert type(back) is type(value)
    assert back == value
    none = await adb.execute("INSERT INTO t (v) VALUES (:v)", {"v": None})
    assert none == 1
    assert await adb.fetch_val("SELECT v FROM t WHERE v IS NULL") is None


async def test_unbindable_value_names_the_parameter(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (v TEXT)")
    with pytest.raises(awaitdb.InterfaceError, match=":v.*object"):
        await adb.execute("INSERT INTO t (v) VALUES (:v)", {"v": object()})


async def _schema(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await adb.execute(
        "CREATE TABLE child ("
        " id INTEGER PRIMARY KEY,"
        " parent_id INTEGER REFERENCES parent (id),"
        " email TEXT NOT NULL CONSTRAINT child_email_key UNIQUE,"
        " age INTEGER CONSTRAINT child_age_check CHECK (age >= 0))"
    )
    await adb.execute("INSERT INTO parent (id) VALUES (1)")
    await adb.execute("INSERT INTO child (id, parent_id, email, age) VALUES (1, 1, 'a@x', 1)")


INSERT = "INSERT INTO child (id, parent_id, email, age) VALUES (:id, :p, :e, :a)"


async def test_integrity_errors(adb: awaitdb.Database) -> None:
    await _schema(adb)
    cases: list[tuple[dict[str, Any], type[awaitdb.IntegrityError], str]] = [
        ({"id": 2, "p": 1, "e": "a@x", "a": 1}, awaitdb.UniqueViolation, "23505"),
        ({"id": 1, "p": 1, "e": "b@x", "a": 1}, awaitdb.UniqueViolation, "23505"),
        ({"id": 3, "p": 99, "e": "c@x", "a": 1}, awaitdb.ForeignKeyViolation, "23503"),
        ({"id": 4, "p": 1, "e": None, "a": 1}, awaitdb.NotNullViolation, "23502"),
        ({"id": 5, "p": 1, "e": "e@x", "a": -1}, awaitdb.CheckViolation, "23514"),
    ]
    for params, cls, sqlstate in cases:
        with pytest.raises(cls) as info:
            await adb.execute(INSERT, params)
        err = info.value
        assert isinstance(err, awaitdb.IntegrityError)
        assert isinstance(err, awaitdb.DatabaseError) and isinstance(err, awaitdb.Error)
        assert err.sqlstate == sqlstate
        assert err.__cause__ is not None  # the driver's exception is chained
    with pytest.raises(awaitdb.CheckViolation) as check:
        await adb.execute(INSERT, {"id": 6, "p": 1, "e": "f@x", "a": -5})
    assert check.value.constraint is not None and "child_age_check" in check.value.constraint
    with pytest.raises(awaitdb.UniqueViolation) as unique:
        await adb.execute(INSERT, {"id": 7, "p": 1, "e": "a@x", "a": 1})
    assert unique.value.constraint is not None and "email" in unique.value.constraint
    assert await adb.fetch_val("SELECT count(*) FROM child") == 1


async def test_programming_errors(adb: awaitdb.Database) -> None:
    await _schema(adb)
    for sql in ["SELEC 1", "SELECT * FROM no_such_table", "SELECT no_such_column FROM child"]:
        with pytest.raises(awaitdb.ProgrammingError) as info:
            await adb.fetch_all(sql)
        assert info.value.sqlstate is not None and info.value.sqlstate.startswith("42")


async def test_data_error(adb: awaitdb.Database, dialect: Any) -> None:
    with pytest.raises(awaitdb.DataError) as info:
        await adb.fetch_val(dialect.overflow_sql)
    assert info.value.sqlstate == "22003"


async def test_error_tree_shape() -> None:
    assert issubclass(awaitdb.PoolTimeout, awaitdb.OperationalError)
    assert issubclass(awaitdb.PoolOverloaded, awaitdb.OperationalError)
    assert issubclass(awaitdb.CannotConnect, awaitdb.OperationalError)
    assert issubclass(awaitdb.ConnectionLost, awaitdb.OperationalError)
    assert issubclass(awaitdb.QueryTimeout, awaitdb.OperationalError)
    for cls in (awaitdb.SerializationFailure, awaitdb.DeadlockDetected, awaitdb.DatabaseBusy):
        assert issubclass(cls, awaitdb.TransientError)
    assert issubclass(awaitdb.TransientError, awaitdb.OperationalError)
    assert issubclass(awaitdb.OperationalError, awaitdb.DatabaseError)
    assert issubclass(awaitdb.InterfaceError, awaitdb.Error)
    assert not issubclass(awaitdb.InterfaceError, awaitdb.DatabaseError)
