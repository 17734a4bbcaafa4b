"""Type-level tests of the ``as_=`` overloads (fetch_one, fetch_all) and of iterate's rows.

Never run: mypy --strict checks it (``[tool.mypy] files`` and
tests/test_testinfra.py::test_as_overloads_type_check). ``assert_type`` fails mypy when an
overload's return type drifts; an ``# type: ignore[...]`` that stops being needed fails it too
(``warn_unused_ignores``), so the refused calls stay refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, assert_type

import awaitdb
from awaitdb import Record


@dataclasses.dataclass
class User:
    id: int
    name: str


class Pair(NamedTuple):
    a: int
    b: str


async def async_database(db: awaitdb.Database) -> None:
    assert_type(await db.fetch_one("SELECT 1"), Record | None)
    assert_type(await db.fetch_one("SELECT 1", as_=None), Record | None)
    assert_type(await db.fetch_one("SELECT 1", {"a": 1}, as_=User), User | None)
    assert_type(await db.fetch_one("SELECT 1", as_=Pair, timeout=1.0), Pair | None)
    assert_type(await db.fetch_one("SELECT 1", as_=dict), dict[Any, Any] | None)
    assert_type(await db.fetch_all("SELECT 1"), list[Record])
    assert_type(await db.fetch_all("SELECT 1", as_=None), list[Record])
    assert_type(await db.fetch_all("SELECT 1", {"a": 1}, as_=User), list[User])
    assert_type(await db.fetch_all("SELECT 1", as_=Pair), list[Pair])
    assert_type(await db.fetch_val("SELECT 1"), Any)
    assert_type(await db.execute("SELECT 1"), int)
    assert_type(await db.execute_many("SELECT :a", [{"a": 1}]), int)
    assert_type(db.iterate("SELECT 1"), awaitdb.Rows)
    async for row in db.iterate("SELECT 1"):
        assert_type(row, Record)
    await db.fetch_one("SELECT 1", as_=42)  # type: ignore[call-overload]
    await db.fetch_all("SELECT 1", as_="User")  # type: ignore[call-overload]
    await db.fetch_all("SELECT 1", User)  # type: ignore[call-overload]


async def async_blocks(db: awaitdb.Database) -> None:
    async with db.transaction() as tx:
        assert_type(tx, awaitdb.Transaction)
        assert_type(await tx.fetch_one("SELECT 1"), Record | None)
        assert_type(await tx.fetch_one("SELECT 1", as_=User), User | None)
        assert_type(await tx.fetch_all("SELECT 1"), list[Record])
        assert_type(await tx.fetch_all("SELECT 1", as_=Pair), list[Pair])
    async with db.connection() as conn:
        assert_type(conn, awaitdb.PinnedConnection)
        assert_type(await conn.fetch_one("SELECT 1", as_=Pair), Pair | None)
        assert_type(await conn.fetch_all("SELECT 1", as_=User), list[User])
        assert_type(await conn.fetch_all("SELECT 1"), list[Record])


def sync_database(db: awaitdb.SyncDatabase) -> None:
    assert_type(db.fetch_one("SELECT 1"), Record | None)
    assert_type(db.fetch_one("SELECT 1", {"a": 1}, as_=User), User | None)
    assert_type(db.fetch_all("SELECT 1"), list[Record])
    assert_type(db.fetch_all("SELECT 1", as_=Pair), list[Pair])
    assert_type(db.iterate("SELECT 1"), awaitdb.SyncRows)
    for row in db.iterate("SELECT 1"):
        assert_type(row, Record)
    with db.transaction() as tx:
        assert_type(tx, awaitdb.SyncTransaction)
        assert_type(tx.fetch_one("SELECT 1", as_=User), User | None)
        assert_type(tx.fetch_all("SELECT 1"), list[Record])
    with db.connection() as conn:
        assert_type(conn, awaitdb.SyncPinnedConnection)
        assert_type(conn.fetch_all("SELECT 1", as_=User), list[User])
        assert_type(conn.fetch_one("SELECT 1"), Record | None)
    db.fetch_one("SELECT 1", as_=42)  # type: ignore[call-overload]
