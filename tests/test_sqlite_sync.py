"""SQLite sync face: threads sharing one database, no event loop anywhere."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import awaitdb


def test_threads_write_and_read_concurrently(sqlite_url: str) -> None:
    db = awaitdb.connect_sync(sqlite_url)
    try:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, who INTEGER)")

        def work(who: int) -> int:
            for i in range(50):
                db.execute("INSERT INTO t (who) VALUES (:w)", {"w": who})
                if i % 10 == 0:
                    with db.transaction():
                        db.execute("INSERT INTO t (who) VALUES (:w)", {"w": who})
                        db.execute("INSERT INTO t (who) VALUES (:w)", {"w": who})
            n: int = db.fetch_val("SELECT count(*) FROM t WHERE who = :w", {"w": who})
            return n

        with ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(work, range(8)))
        assert counts == [60] * 8
        assert db.fetch_val("SELECT count(*) FROM t") == 480
        assert db.stats().pool_in_use == 0
    finally:
        db.close()


def test_a_transaction_is_bound_to_its_thread(sqlite_url: str) -> None:
    db = awaitdb.connect_sync(sqlite_url, acquire_timeout=5)
    try:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        inside = threading.Event()
        done = threading.Event()
        seen: list[int] = []

        def other() -> None:
            inside.wait()
            # not part of the main thread's transaction: waits for it, sees committed data
            db.execute("INSERT INTO t (id) VALUES (2)")
            seen.append(db.fetch_val("SELECT count(*) FROM t"))
            done.set()

        thread = threading.Thread(target=other)
        thread.start()
        with db.transaction():
            db.execute("INSERT INTO t (id) VALUES (1)")
            inside.set()
            assert not done.wait(0.1)
        thread.join(10)
        assert seen == [2]
    finally:
        db.close()


def test_sync_pool_timeout(sqlite_url: str) -> None:
    db = awaitdb.connect_sync(sqlite_url, acquire_timeout=0.1)
    try:
        release = threading.Event()
        started = threading.Event()

        def hold() -> None:
            with db.transaction():
                started.set()
                release.wait(10)

        thread = threading.Thread(target=hold)
        thread.start()
        started.wait(5)
        with pytest.raises(awaitdb.PoolTimeout):
            db.execute("CREATE TABLE x (a INTEGER)")
        release.set()
        thread.join(10)
        assert db.stats().acquire_timeouts == 1
    finally:
        db.close()
