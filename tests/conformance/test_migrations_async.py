"""Conformance: migrations behave the same on both faces and both backends.

Written once against the async face (``Migrator``, ``connect(migrations=)``); the generated twin
runs ``SyncMigrator`` and ``connect_sync(migrations=)`` on the ``SyncDatabase`` itself. A ``.py``
migration is written for the face that applies it (``async def up`` or ``def up``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write

import awaitdb
from awaitdb._compat import ASYNC
from awaitdb.migrations import LEDGER, Migrator


def _python_step(sql: str, *, this_face: bool = True) -> str:
    """A ``.py`` migration running ``sql``, for this face (or, with ``this_face=False``, the
    other one)."""
    async_step = f"async def up(tx):\n    await tx.execute({sql!r})\n"
    sync_step = f"def up(tx):\n    tx.execute({sql!r})\n"
    if ASYNC:
        return async_step if this_face else sync_step
    return sync_step if this_face else async_step


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    write(folder, "0001_items.sql", """
        -- up
        CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
        -- down
        DROP TABLE items;
    """)  # fmt: skip
    write(folder, "0002_seed.py", _python_step("INSERT INTO items (id, name) VALUES (1, 'a')"))
    return folder


async def _versions(db: Any) -> list[int]:
    return [r["version"] for r in await db.fetch_all(f"SELECT version FROM {LEDGER} ORDER BY 1")]


async def test_connect_applies_migrations(aconnect: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    db = await aconnect(migrations=str(folder))
    assert db.migrations_applied == ("0001_items", "0002_seed")
    assert await _versions(db) == [1, 2]
    assert await db.fetch_val("SELECT name FROM items WHERE id = 1") == "a"
    again = await aconnect(migrations=str(folder))
    assert again.migrations_applied == ()


async def test_migrator_status_rollback_and_baseline(adb: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    migrator = Migrator(adb, folder, backup=False)
    assert [s.state for s in await migrator.status()] == ["pending", "pending"]
    result = await migrator.migrate(to=1)
    assert result.applied == ["0001_items"] and "0001_items" in result.seconds
    assert [s.state for s in await migrator.status()] == ["applied", "pending"]
    assert (await migrator.rollback(to=0)).applied == ["0001_items"]
    assert await _versions(adb) == []
    assert await migrator.baseline(1) == ["0001_items"]
    assert await _versions(adb) == [1]


async def test_dry_run_applies_nothing(adb: Any, tmp_path: Path) -> None:
    result = await Migrator(adb, _folder(tmp_path)).migrate(dry_run=True)
    assert result.applied == [] and result.plan_text is not None
    assert "CREATE TABLE items" in result.plan_text and "-- up(tx) from 0002_seed.py" in (
        result.plan_text
    )
    assert await _versions(adb) == []


async def test_row_loss_is_rolled_back(adb: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    await Migrator(adb, folder, backup=False).migrate()
    write(folder, "0003_oops.sql", "-- up\nDELETE FROM items;\n")
    with pytest.raises(awaitdb.MigrationError, match="lost 1 of 1 rows"):
        await Migrator(adb, folder, backup=False).migrate()
    assert await adb.fetch_val("SELECT count(*) FROM items") == 1
    assert await _versions(adb) == [1, 2]


async def test_a_python_migration_for_the_other_face_is_refused(
    aconnect: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (x INTEGER);\n")
    write(folder, "0002_other.py", _python_step("INSERT INTO t VALUES (1)", this_face=False))
    with pytest.raises(awaitdb.MigrationError, match=r"0002_other.py: up\(\)"):
        await aconnect(migrations=str(folder))
    db = await aconnect()
    # issue 8 review: every pending step is checked before anything runs, the .sql one included
    assert await _versions(db) == []
    assert await db.fetch_val(f"SELECT count(*) FROM {LEDGER}") == 0
    with pytest.raises(awaitdb.DatabaseError):
        await db.fetch_val("SELECT count(*) FROM t")


async def test_issue8_a_rollback_with_a_down_for_the_other_face_undoes_nothing(
    adb: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (x INTEGER);\n-- down\nDROP TABLE t;\n")
    # 0002's up is for this face, its down for the other one
    up = _python_step("INSERT INTO t VALUES (2)")
    down = _python_step("DELETE FROM t", this_face=False).replace("def up(", "def down(")
    write(folder, "0002_py.py", up + down)
    write(folder, "0003_three.sql", "-- up\nINSERT INTO t VALUES (3);\n-- down\nDELETE FROM t;\n")
    await Migrator(adb, folder, backup=False).migrate()
    # refused before 0003 (newest, undone first) or anything else is undone
    with pytest.raises(awaitdb.MigrationError, match=r"0002_py.py: down\(\)"):
        await Migrator(adb, folder, backup=False).rollback(0)
    assert await _versions(adb) == [1, 2, 3]
    assert await adb.fetch_val("SELECT count(*) FROM t") == 2


async def test_a_changed_file_is_refused_until_accepted(adb: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    await Migrator(adb, folder, backup=False).migrate()
    path = folder / "0001_items.sql"
    path.write_text(path.read_text() + "\n-- a comment changes the checksum\n")
    with pytest.raises(awaitdb.MigrationError, match="changed after it was applied"):
        await Migrator(adb, folder, backup=False).migrate()
    assert [s.state for s in await Migrator(adb, folder).status()] == ["changed", "applied"]
    await Migrator(adb, folder, backup=False, accept_changed=[1]).migrate()
    assert [s.state for s in await Migrator(adb, folder).status()] == ["applied", "applied"]


async def test_out_of_order_is_refused_unless_allowed(adb: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0002_b.sql", "-- up\nCREATE TABLE b (x INTEGER);\n")
    await Migrator(adb, folder, backup=False).migrate()
    write(folder, "0001_a.sql", "-- up\nCREATE TABLE a (x INTEGER);\n")
    with pytest.raises(awaitdb.MigrationError, match="numbered below the applied version 2"):
        await Migrator(adb, folder, backup=False).migrate()
    result = await Migrator(adb, folder, backup=False, allow_out_of_order=True).migrate()
    assert result.applied == ["0001_a"]


async def test_a_failing_migration_leaves_the_previous_version(adb: Any, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    write(folder, "0003_half.sql", """
        -- up
        INSERT INTO items (id, name) VALUES (2, 'b');
        INSERT INTO no_such_table VALUES (1);
    """)  # fmt: skip
    with pytest.raises(awaitdb.MigrationError, match=r"0003_half.sql:3: "):
        await Migrator(adb, folder, backup=False).migrate()
    assert await _versions(adb) == [1, 2]
    assert await adb.fetch_val("SELECT count(*) FROM items") == 1  # its first statement undone


async def test_transaction_control_in_a_migration_is_refused(adb: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_commit.sql", "-- up\nCREATE TABLE t (x INTEGER);\nCOMMIT;\n")
    with pytest.raises(awaitdb.MigrationError, match="0001_commit.sql:3: .*transaction control"):
        await Migrator(adb, folder, backup=False).migrate()
    assert await _versions(adb) == []
