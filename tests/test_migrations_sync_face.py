"""``connect_sync(migrations=)`` migrates on the ``SyncDatabase`` itself (issue 8).

Before, the sync face started a thread running a private event loop with a second, async pool:
a psycopg user ended up running asyncpg. Watched in a fresh interpreter, so that what the test
process already imported does not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write

import awaitdb
from awaitdb.migrations import LEDGER, SyncMigrator, verify_backup

_WATCH = """
import asyncio.base_events, json, sys, threading

threads, loops = [], []
start = threading.Thread.start
def watched_start(self):
    threads.append(self.name)
    return start(self)
threading.Thread.start = watched_start
init = asyncio.base_events.BaseEventLoop.__init__
def watched_init(self, *args, **kwargs):
    loops.append(type(self).__name__)
    init(self, *args, **kwargs)
asyncio.base_events.BaseEventLoop.__init__ = watched_init

import awaitdb

url, folder = sys.argv[1], sys.argv[2]
with awaitdb.connect_sync(url) as plain:
    connections = plain.stats().pool_size
with awaitdb.connect_sync(url, migrations=folder) as db:
    report = {
        "applied": list(db.migrations_applied),
        "threads": threads,
        "loops": loops,
        "asyncpg": "asyncpg" in sys.modules,
        "extra_connections": db.stats().pool_size - connections,
        "rows": db.fetch_val("SELECT count(*) FROM t"),
    }
print(json.dumps(report))
"""


def test_connect_sync_migrates_without_a_loop_a_thread_or_a_second_pool(
    db_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (x INTEGER);\n")
    write(folder, "0002_fill.py", "def up(tx):\n    tx.execute('INSERT INTO t VALUES (1)')\n")
    done = subprocess.run(
        [sys.executable, "-c", _WATCH, db_url, str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "applied": ["0001_t", "0002_fill"],
        "threads": [],
        "loops": [],
        "asyncpg": False,
        "extra_connections": 0,
        "rows": 1,
    }


_MIGRATE_SYNC = """
import sys, awaitdb
with awaitdb.connect_sync(sys.argv[1], migrations=sys.argv[2]) as db:
    print(",".join(db.migrations_applied))
"""


@pytest.mark.slow
def test_two_sync_processes_migrate_at_once(db_url: str, tmp_path: Path) -> None:
    """The lock holds on the sync face too: each migration runs in exactly one process."""
    folder = tmp_path / "migrations"
    write(folder, "0001_runs.sql", "-- up\nCREATE TABLE runs (id INTEGER PRIMARY KEY);\n")
    for version in (2, 3, 4):
        write(folder, f"000{version}_step.py", f"""
            import time

            def up(tx):
                tx.execute("INSERT INTO runs (id) VALUES (:i)", {{"i": {version}}})
                time.sleep(0.3)
        """)  # fmt: skip
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_SYNC, db_url, str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    applied = [set(filter(None, out.strip().split(","))) for out, _ in outputs]
    assert applied[0] | applied[1] == {"0001_runs", "0002_step", "0003_step", "0004_step"}
    assert not applied[0] & applied[1]
    with awaitdb.connect_sync(db_url) as db:
        assert [r["id"] for r in db.fetch_all("SELECT id FROM runs ORDER BY id")] == [2, 3, 4]
        assert db.fetch_val(f"SELECT count(*) FROM {LEDGER}") == 4


def test_sync_face_takes_a_verified_backup_before_migrating(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (x INTEGER);\nINSERT INTO t VALUES (1);\n")
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with awaitdb.connect_sync(url, migrations=str(folder)) as db:
        assert db.migrations_applied == ("0001_t",)
    assert not (tmp_path / "backups").exists()  # a brand-new database: nothing to lose
    write(folder, "0002_u.sql", "-- up\nCREATE TABLE u (x INTEGER);\n")
    with awaitdb.connect_sync(url) as db:
        result = SyncMigrator(db, folder).migrate()
    assert result.applied == ["0002_u"] and result.backup is not None
    assert result.backup.tables == {"t": 1, LEDGER: 1} and result.backup.quick_check == "ok"
    assert verify_backup(result.backup.backup).sha256 == result.backup.sha256
    assert Path(result.backup.backup).parent == tmp_path / "backups"


def test_sync_rebuild_keeps_every_child_and_what_goes_with_the_table(tmp_path: Path) -> None:
    """``rebuild_table_sync``: the same 12-step procedure as ``rebuild_table``, on the sync
    face (a naive rebuild would cascade into the 60 children)."""
    folder = tmp_path / "migrations"
    write(folder, "0001_family.sql", """
        -- up
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE child (
            id INTEGER PRIMARY KEY,
            parent_id INTEGER NOT NULL REFERENCES parent (id) ON DELETE CASCADE,
            label TEXT);
        CREATE INDEX parent_name ON parent (name);
        CREATE VIEW parent_names AS SELECT name FROM parent;
        INSERT INTO parent (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c');
        WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < 60)
        INSERT INTO child (id, parent_id, label) SELECT v, 1 + v % 3, 'c' || v FROM n;
    """)  # fmt: skip
    write(folder, "0002_rebuild_parent.py", """
        from awaitdb.migrations import rebuild_table_sync

        FOREIGN_KEYS = False

        def up(tx):
            copied = rebuild_table_sync(
                tx, "parent",
                "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER DEFAULT 0)")
            assert copied == 3
    """)  # fmt: skip
    url = f"sqlite:///{tmp_path / 'family.db'}"
    with awaitdb.connect_sync(url, migrations=str(folder)) as db:
        assert db.migrations_applied == ("0001_family", "0002_rebuild_parent")
        assert db.fetch_val("SELECT count(*) FROM child") == 60
        assert db.fetch_val("SELECT count(*) FROM parent WHERE score = 0") == 3
        assert db.fetch_val("SELECT count(*) FROM parent_names") == 3  # view recreated
        index = "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'parent_name'"
        assert db.fetch_val(index) == 1
        assert db.fetch_val("PRAGMA foreign_keys") == 1  # back on after the migration
        assert db.fetch_val("PRAGMA legacy_alter_table") == 0


def test_rebuild_on_a_server_database_says_what_it_is_for(pg_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    write(folder, "0001_t.sql", "-- up\nCREATE TABLE t (x INTEGER);\n")
    write(folder, "0002_rebuild.py", """
        from awaitdb.migrations import rebuild_table_sync

        def up(tx):
            rebuild_table_sync(tx, "t", "(x BIGINT)")
    """)  # fmt: skip
    with pytest.raises(awaitdb.MigrationError, match="rebuild_table rebuilds SQLite tables"):
        awaitdb.connect_sync(pg_url, migrations=str(folder))
    with awaitdb.connect_sync(pg_url) as db:
        assert db.fetch_val(f"SELECT count(*) FROM {LEDGER}") == 1
