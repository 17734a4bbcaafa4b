"""Migrations that cannot lose data: rebuilds, backups, restore, kills, concurrency, the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import write

import awaitdb
from awaitdb.cli import main as cli
from awaitdb.migrations import (
    LEDGER,
    Migrator,
    backup_sqlite,
    check,
    migrate,
    restore_sqlite,
    verify_backup,
)

ROOT = Path(__file__).resolve().parent.parent


def family(folder: Path, dialect: str = "sqlite") -> None:
    """A parent whose children cascade on delete: the table a naive rebuild would empty."""
    trigger = """
        CREATE TRIGGER parent_touch AFTER UPDATE ON parent BEGIN
            UPDATE child SET label = label || '!' WHERE parent_id = new.id;
        END;
    """
    write(folder, "0001_family.sql", f"""
        -- up
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE child (
            id INTEGER PRIMARY KEY,
            parent_id INTEGER NOT NULL REFERENCES parent (id) ON DELETE CASCADE,
            label TEXT);
        CREATE INDEX child_parent ON child (parent_id);
        CREATE VIEW parent_names AS SELECT name FROM parent;
        {trigger if dialect == "sqlite" else ""}
    """)  # fmt: skip
    numbers = (
        "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 60) "
        if dialect == "sqlite"
        else "WITH n(v) AS (SELECT generate_series(1, 60)) "
    )
    write(folder, "0002_rows.sql", f"""
        -- up
        INSERT INTO parent (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c');
        {numbers}
        INSERT INTO child (id, parent_id, label) SELECT v, 1 + v % 3, 'c' || v FROM n;
    """)  # fmt: skip


async def test_cascade_rebuild_keeps_every_child(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    write(folder, "0003_rebuild_parent.py", """
        from awaitdb.migrations import rebuild_table

        FOREIGN_KEYS = False

        async def up(tx):
            copied = await rebuild_table(
                tx, "parent",
                "(id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '', score INTEGER DEFAULT 0)")
            assert copied == 3
    """)  # fmt: skip
    async with awaitdb.connect(sqlite_url) as db:
        await migrate(db, folder)
        assert await db.fetch_val("SELECT count(*) FROM child") == 60
        assert await db.fetch_val("SELECT count(*) FROM parent WHERE score = 0") == 3
        assert await db.fetch_val("SELECT count(*) FROM parent_names") == 3  # view recreated
        await db.execute("UPDATE parent SET name = 'z' WHERE id = 1")  # trigger recreated
        assert await db.fetch_val("SELECT count(*) FROM child WHERE label LIKE '%!'") == 20
        assert await db.fetch_val("PRAGMA foreign_keys") == 1  # back on after the migration
        assert all(f.ok for f in await check(db))


async def test_naive_rebuild_is_caught_by_the_guard(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    write(folder, "0003_naive.sql", """
        -- up
        DROP VIEW parent_names;
        CREATE TABLE parent_new (id INTEGER PRIMARY KEY, name TEXT NOT NULL DEFAULT '');
        INSERT INTO parent_new SELECT id, name FROM parent;
        DROP TABLE parent;
        ALTER TABLE parent_new RENAME TO parent;
    """)  # fmt: skip
    async with awaitdb.connect(sqlite_url) as db:
        with pytest.raises(awaitdb.MigrationError, match=r"table 'child' lost 60 of 60 rows"):
            await migrate(db, folder)
        assert await db.fetch_val("SELECT count(*) FROM child") == 60


async def test_rebuild_requires_foreign_keys_off(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    write(folder, "0003_rebuild.py", """
        from awaitdb.migrations import rebuild_table

        async def up(tx):
            await rebuild_table(tx, "parent", "(id INTEGER PRIMARY KEY, name TEXT)")
    """)  # fmt: skip
    async with awaitdb.connect(sqlite_url) as db:
        with pytest.raises(awaitdb.MigrationError, match="declare FOREIGN_KEYS = False"):
            await migrate(db, folder)


async def test_verified_backup_before_migrating(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    async with awaitdb.connect(sqlite_url) as db:
        await Migrator(db, folder).migrate(to=2)
        write(folder, "0003_more.sql", "-- up\nCREATE TABLE more (x INTEGER);\n")
        result = await migrate(db, folder)
    assert result.backup is not None
    manifest = result.backup
    assert manifest.quick_check == "ok" and manifest.schema_version == 2
    assert manifest.tables["child"] == 60 and manifest.tables["parent"] == 3
    assert Path(manifest.backup).parent == path.parent / "backups"
    on_disk = json.loads(Path(manifest.backup + ".json").read_text())
    assert on_disk["sha256"] == manifest.sha256
    assert verify_backup(manifest.backup).sha256 == manifest.sha256


def test_backups_are_pruned(sqlite_url: str) -> None:
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    sqlite3.connect(path).close()
    made = [backup_sqlite(path, keep=2).backup for _ in range(4)]
    left = sorted(p.name for p in (path.parent / "backups").glob("*.sqlite3"))
    assert left == sorted(Path(m).name for m in made[-2:])


async def test_restore_refuses_corruption_and_a_database_in_use(
    sqlite_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    async with awaitdb.connect(sqlite_url) as db:
        await migrate(db, folder)
        manifest = backup_sqlite(path)
        with pytest.raises(awaitdb.MigrationError, match="another connection or process"):
            restore_sqlite(manifest.backup, path)  # the database above is still open
        await db.execute("DELETE FROM child")
    restore_sqlite(manifest.backup, path)
    async with awaitdb.connect(sqlite_url) as db:
        assert await db.fetch_val("SELECT count(*) FROM child") == 60
    data = bytearray(Path(manifest.backup).read_bytes())
    data[len(data) // 2] ^= 0xFF
    Path(manifest.backup).write_bytes(bytes(data))
    with pytest.raises(awaitdb.MigrationError, match="corrupted"):
        restore_sqlite(manifest.backup, path)


def _script(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


MIGRATE = """
    import asyncio, sys, awaitdb
    from awaitdb.migrations import migrate
    async def main():
        async with awaitdb.connect(sys.argv[1]) as db:
            result = await migrate(db, sys.argv[2], lock_timeout=60)
            print(",".join(result.applied))
    asyncio.run(main())
"""


@pytest.mark.slow
def test_a_migrator_killed_midway_leaves_the_last_good_version(
    sqlite_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    marker = tmp_path / "started"
    write(folder, "0003_slow.py", f"""
        import asyncio, pathlib

        async def up(tx):
            await tx.execute("UPDATE child SET label = 'half-done'")
            await tx.execute("CREATE TABLE side_effect (x INTEGER)")
            pathlib.Path({str(marker)!r}).write_text("running")
            await asyncio.sleep(60)
    """)  # fmt: skip
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    slow = folder / "0003_slow.py"
    parked = slow.rename(tmp_path / "0003_slow.py")
    first = _script(MIGRATE, sqlite_url, str(folder))  # versions 1 and 2 first
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    parked.rename(slow)
    proc = _script(MIGRATE, sqlite_url, str(folder))
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the migrator exited before the slow migration started"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(path)
    try:
        assert [r[0] for r in conn.execute(f"SELECT version FROM {LEDGER}")] == [1, 2]
        assert conn.execute("SELECT count(*) FROM child WHERE label = 'half-done'").fetchone() == (
            0,
        )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "side_effect" not in tables
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    finally:
        conn.close()
    backups = sorted((path.parent / "backups").glob("*.sqlite3"))
    assert backups, "the migrator backed the database up before touching it"
    manifest = verify_backup(backups[-1])
    before = dict(manifest.tables)
    restore_sqlite(backups[-1], path)
    conn = sqlite3.connect(path)
    try:
        counts = {
            name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        assert counts == before
        labels = conn.execute("SELECT group_concat(label, ',') FROM child ORDER BY id").fetchone()
        assert "half-done" not in labels[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_two_processes_migrate_at_once(db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(
        folder,
        "0001_counter.sql",
        "-- up\nCREATE TABLE runs (id INTEGER PRIMARY KEY, v INTEGER);\n",
    )
    for version in (2, 3, 4):
        write(folder, f"000{version}_step.py", f"""
            import asyncio

            async def up(tx):
                await tx.execute("INSERT INTO runs (id, v) VALUES (:i, :i)", {{"i": {version}}})
                await asyncio.sleep(0.3)
        """)  # fmt: skip
    procs = [_script(MIGRATE, db_url, str(folder)) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    applied = [set(filter(None, out.strip().split(","))) for out, _ in outputs]
    assert applied[0] | applied[1] == {"0001_counter", "0002_step", "0003_step", "0004_step"}
    assert not applied[0] & applied[1]  # each migration ran in exactly one process
    db = awaitdb.connect_sync(db_url)
    try:
        assert [r["id"] for r in db.fetch_all("SELECT id FROM runs ORDER BY id")] == [2, 3, 4]
        assert db.fetch_val(f"SELECT count(*) FROM {LEDGER}") == 4
    finally:
        db.close()


async def test_no_transaction_migration_and_dirty_state(pg_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);\n")
    write(folder, "0002_index.sql", """
        -- awaitdb: no-transaction
        -- up
        CREATE INDEX CONCURRENTLY t_v ON t (v);
    """)  # fmt: skip
    async with awaitdb.connect(pg_url) as db:
        assert (await migrate(db, folder)).applied == ["0001_t", "0002_index"]
        assert await db.fetch_val("SELECT count(*) FROM pg_indexes WHERE indexname = 't_v'") == 1
        write(folder, "0003_bad_index.sql", """
            -- awaitdb: no-transaction
            -- up
            CREATE INDEX CONCURRENTLY t_w ON t (no_such_column);
        """)  # fmt: skip
        with pytest.raises(
            awaitdb.MigrationError, match=r"0003_bad_index.sql:3: .*recorded as dirty"
        ):
            await migrate(db, folder)
        with pytest.raises(
            awaitdb.MigrationError, match="DELETE FROM awaitdb_migrations WHERE version = 3"
        ):
            await migrate(db, folder)
        states = {s.version: s.state for s in await Migrator(db, folder).status()}
        assert states[3] == "dirty"


def test_multi_statement_no_transaction_is_refused(tmp_path: Path) -> None:
    from awaitdb.migrations import load_migrations

    write(tmp_path, "0001_two.sql", "-- awaitdb: no-transaction\n-- up\nSELECT 1;\nSELECT 2;\n")
    with pytest.raises(awaitdb.MigrationError, match=r"0001_two.sql:4: .*single statement"):
        load_migrations(tmp_path)


async def test_check_finds_orphans(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    async with awaitdb.connect(sqlite_url) as db:
        await migrate(db, folder)
        assert all(f.ok for f in await check(db, full=True))
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("INSERT INTO child (id, parent_id, label) VALUES (999, 42, 'orphan')")
    conn.commit()
    conn.close()
    async with awaitdb.connect(sqlite_url) as db:
        findings = {f.check: f for f in await check(db)}
    assert not findings["foreign_key_check"].ok
    orphan = findings["orphans child(parent_id) -> parent"]
    assert not orphan.ok and orphan.detail == "1 orphan row(s)"


async def test_check_on_postgres(pg_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder, "postgresql")
    async with awaitdb.connect(pg_url) as db:
        await migrate(db, folder)
        findings = await check(db)
        assert any(f.check == "orphans child(parent_id) -> parent" for f in findings)
        assert all(f.ok for f in findings)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_end_to_end(sqlite_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    family(folder)
    common = ["--url", sqlite_url, "--dir", str(folder)]
    dry = invoke("migrate", "--dry-run", *common)
    assert dry.exit_code == 2  # a dry run creates nothing, so it refuses a missing file
    sqlite3.connect(tmp_path / "sqlite-only.db").close()  # an empty database
    dry = invoke("migrate", "--dry-run", *common)
    assert dry.exit_code == 0 and "BEGIN IMMEDIATE;" in dry.output
    status = invoke("status", "--json", *common)
    assert status.exit_code == 0
    assert [row["state"] for row in json.loads(status.output)] == ["pending", "pending"]
    done = invoke("migrate", "--json", *common)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["applied"] == ["0001_family", "0002_rows"]
    assert invoke("check", *common).exit_code == 0
    backup = invoke("backup", "--json", *common)
    assert backup.exit_code == 0
    manifest = json.loads(backup.output)
    assert manifest["quick_check"] == "ok" and manifest["tables"]["child"] == 60
    rollback = invoke("rollback", "--to", "1", *common)
    assert rollback.exit_code == 1 and "no down section" in rollback.output
    restored = invoke("restore", manifest["backup"], *common)
    assert restored.exit_code == 0, restored.output
    write(folder, "0001_family.sql", "-- up\nCREATE TABLE changed (x INTEGER);\n")
    assert invoke("status", *common).exit_code == 1  # a changed file is a problem
    failed = invoke("migrate", *common)
    assert failed.exit_code == 1 and "changed after it was applied" in failed.output
    assert invoke("baseline", "9", *common).exit_code == 1


def test_cli_bad_usage_and_pg_backup(pg_url: str, tmp_path: Path) -> None:
    assert invoke("migrate", "--to", "x").exit_code == 2
    bad = invoke("status", "--url", "mysql://nope", "--dir", str(tmp_path))
    assert bad.exit_code == 2 and "unknown URL scheme" in bad.output
    result = invoke("backup", str(tmp_path), "--url", pg_url, "--json")
    if result.exit_code == 1:
        assert "pg_dump" in result.output  # said clearly when pg_dump is not installed
    else:
        assert Path(json.loads(result.output)["backup"]).stat().st_size > 0
