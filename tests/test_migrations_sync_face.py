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

from conftest import write

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
