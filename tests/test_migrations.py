"""Migrations on both backends: ledger, checksums, order, guards, rollback, baseline, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write

import awaitdb
from awaitdb.migrations import LEDGER, Migrator, migrate


def standard(folder: Path) -> None:
    write(folder, "0001_users.sql", """
        -- up
        CREATE TABLE users (id INTEGER PRIMARY KEY, legacy_id TEXT, name TEXT NOT NULL);
        CREATE INDEX users_name ON users (name);
        -- down
        DROP TABLE users;
    """)  # fmt: skip
    write(folder, "0002_seed.sql", """
        -- up
        INSERT INTO users (id, legacy_id, name) VALUES (1, 'U-001', 'ada'), (2, 'u_2', 'bob');
        -- down
        DELETE FROM users;
        -- allow-row-loss: users
    """)  # fmt: skip
    write(folder, "0003_normalise_ids.py", """
        # A data migration: normalise legacy user ids (seed 004's backfill).
        async def up(tx):
            rows = await tx.fetch_all("SELECT id, legacy_id FROM users")
            for row in rows:
                clean = row["legacy_id"].lower().replace("_", "-")
                await tx.execute("UPDATE users SET legacy_id = :v WHERE id = :id",
                                 {"v": clean, "id": row["id"]})

        async def down(tx):
            pass
    """)  # fmt: skip


async def versions(db: Any) -> list[int]:
    return [r["version"] for r in await db.fetch_all(f"SELECT version FROM {LEDGER} ORDER BY 1")]


async def test_migrate_applies_everything_once(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    db = await aconnect()
    result = await migrate(db, folder)
    assert result.applied == ["0001_users", "0002_seed", "0003_normalise_ids"]
    assert await versions(db) == [1, 2, 3]
    legacy = [r["legacy_id"] for r in await db.fetch_all("SELECT legacy_id FROM users ORDER BY id")]
    assert legacy == ["u-001", "u-2"]
    row = await db.fetch_one(f"SELECT * FROM {LEDGER} WHERE version = 1")
    assert row is not None and len(row["checksum"]) == 64 and row["applied_at"]
    assert row["awaitdb_version"] == awaitdb.__version__ and row["duration_ms"] >= 0
    assert (await migrate(db, folder)).applied == []
    states = {s.version: s.state for s in await Migrator(db, folder).status()}
    assert states == {1: "applied", 2: "applied", 3: "applied"}


async def test_to_and_dry_run(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    db = await aconnect()
    plan = await Migrator(db, folder).migrate(dry_run=True)
    assert plan.plan_text is not None
    assert "CREATE TABLE users" in plan.plan_text and "COMMIT;" in plan.plan_text
    assert "BEGIN" in plan.plan_text and "up(tx) from 0003_normalise_ids.py" in plan.plan_text
    assert await versions(db) == []  # nothing changed
    await Migrator(db, folder).migrate(to=1)
    assert await versions(db) == [1]
    with pytest.raises(awaitdb.MigrationError, match="no migration with version 7"):
        await Migrator(db, folder).migrate(to=7)


async def test_changed_file_is_refused_until_accepted(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    db = await aconnect()
    await migrate(db, folder)
    path = folder / "0001_users.sql"
    path.write_text(path.read_text() + "\n-- edited after the fact\n")
    with pytest.raises(
        awaitdb.MigrationError, match="0001_users.sql: changed after it was applied"
    ):
        await migrate(db, folder)
    states = {s.version: s.state for s in await Migrator(db, folder).status()}
    assert states[1] == "changed"
    await Migrator(db, folder, accept_changed=[1]).migrate()
    assert (await migrate(db, folder)).applied == []


async def test_out_of_order_is_refused_unless_allowed(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    db = await aconnect()
    await migrate(db, folder)
    write(folder, "0000_early.sql", "-- up\nCREATE TABLE early (x INTEGER);\n")
    with pytest.raises(awaitdb.MigrationError, match="0000_early.sql: not applied, but numbered"):
        await migrate(db, folder)
    result = await Migrator(db, folder, allow_out_of_order=True).migrate()
    assert result.applied == ["0000_early"]


async def test_failure_midway_leaves_the_previous_version(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    write(folder, "0004_broken.sql", """
        -- up
        CREATE TABLE half (x INTEGER);
        INSERT INTO half (x) VALUES (1);
        INSERT INTO no_such_table (x) VALUES (1);
    """)  # fmt: skip
    db = await aconnect()
    with pytest.raises(awaitdb.MigrationError, match=r"0004_broken.sql:4: .*no_such_table"):
        await migrate(db, folder)
    assert await versions(db) == [1, 2, 3]
    with pytest.raises(awaitdb.ProgrammingError):
        await db.fetch_val("SELECT count(*) FROM half")
    assert await db.fetch_val("SELECT count(*) FROM users") == 2


async def test_row_loss_guard(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    write(folder, "0004_oops.sql", "-- up\nDELETE FROM users WHERE id = 2;\n")
    db = await aconnect()
    with pytest.raises(awaitdb.MigrationError, match=r"table 'users' lost 1 of 2 rows"):
        await migrate(db, folder)
    assert await db.fetch_val("SELECT count(*) FROM users") == 2
    assert await versions(db) == [1, 2, 3]
    write(
        folder,
        "0004_oops.sql",
        "-- allow-row-loss: users\n-- up\nDELETE FROM users WHERE id = 2;\n",
    )
    assert (await migrate(db, folder)).applied == ["0004_oops"]
    assert await db.fetch_val("SELECT count(*) FROM users") == 1


async def test_dropping_a_table_with_rows_needs_a_declaration(
    aconnect: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    write(folder, "0004_drop.sql", "-- up\nDROP TABLE users;\n")
    db = await aconnect()
    with pytest.raises(awaitdb.MigrationError, match="the table is gone"):
        await migrate(db, folder)
    assert await db.fetch_val("SELECT count(*) FROM users") == 2


async def test_rollback_and_baseline(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    db = await aconnect()
    await migrate(db, folder)
    result = await Migrator(db, folder).rollback(to=1)
    assert result.applied == ["0003_normalise_ids", "0002_seed"]
    assert await versions(db) == [1]
    assert await db.fetch_val("SELECT count(*) FROM users") == 0
    await Migrator(db, folder).rollback(to=0)
    assert await versions(db) == []
    write(folder, "0004_nodown.sql", "-- up\nCREATE TABLE z (x INTEGER);\n")
    await migrate(db, folder)
    with pytest.raises(awaitdb.MigrationError, match="0004_nodown.sql: no down section"):
        await Migrator(db, folder).rollback(to=3)
    # baseline: an existing database marked as already at version 2
    other = tmp_path / "other"
    standard(other)
    await db.execute(f"DELETE FROM {LEDGER}")
    assert await Migrator(db, other).baseline(2) == ["0001_users", "0002_seed"]
    assert await versions(db) == [1, 2]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("1_x.sql.bak", "", None),  # not a migration file: ignored
        ("01-bad.sql", "-- up\nSELECT 1;", "bad migration file name"),
        ("0001_noup.sql", "CREATE TABLE t (x INTEGER);", r"0001_noup.sql:1: SQL before"),
        ("0001_empty.sql", "-- nothing here\n", r"0001_empty.sql:1: no '-- up' section"),
        ("0001_twice.sql", "-- up\nSELECT 1;\n-- up\nSELECT 2;", r"0001_twice.sql:3: a second"),
        ("0001_directive.sql", "-- awaitdb: sometimes\n-- up\nSELECT 1;", r":1: unknown directive"),
        ("0001_py.py", "async def up(tx)\n    pass\n", r"0001_py.py:1: Python syntax error"),
        ("0001_noup.py", "X = 1\n", r"0001_noup.py:1: no 'async def up"),
    ],
)
def test_bad_files_name_file_and_line(
    tmp_path: Path, name: str, text: str, message: str | None
) -> None:
    from awaitdb.migrations import load_migrations

    write(tmp_path, name, text)
    if message is None:
        assert load_migrations(tmp_path) == []
        return
    with pytest.raises(awaitdb.MigrationError, match=message):
        load_migrations(tmp_path)


async def test_sql_syntax_error_names_file_and_line(aconnect: Any, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(
        folder,
        "0001_typo.sql",
        "-- up\nCREATE TABLE ok (x INTEGER);\n\nCREAT TABLE typo (x INTEGER);\n",
    )
    db = await aconnect()
    with pytest.raises(awaitdb.MigrationError, match=r"0001_typo.sql:4: .*syntax"):
        await migrate(db, folder)
    assert await versions(db) == []


async def test_auto_migrate_on_connect(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    standard(folder)
    async with awaitdb.connect(db_url, migrations=str(folder)) as db:
        assert await versions(db) == [1, 2, 3]
    write(folder, "0004_more.sql", "-- up\nCREATE TABLE more (x INTEGER);\n")
    sdb = awaitdb.connect_sync(db_url, migrations=str(folder))
    try:
        assert sdb.fetch_val(f"SELECT max(version) FROM {LEDGER}") == 4
    finally:
        sdb.close()


async def test_transaction_statements_in_a_migration_are_refused(
    aconnect: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_commit.sql", "-- up\nCREATE TABLE t (x INTEGER);\nCOMMIT;\n")
    db = await aconnect()
    with pytest.raises(awaitdb.MigrationError, match="0001_commit.sql:3: .*transaction control"):
        await migrate(db, folder)
    assert await versions(db) == []
