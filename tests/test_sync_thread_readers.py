"""The sync SQLite face closes a thread's reader when the thread ends (issue 8).

Before: 200 short-lived threads left 128 descriptors open until ``close()``, and from the 65th
thread on, reads silently went through the pooled readers instead of a thread reader.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import awaitdb
from awaitdb._sqlite.sync_backend import MAX_THREAD_READERS

needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd"
)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _read_in_threads(db: awaitdb.SyncDatabase, count: int) -> None:
    for _ in range(count):
        thread = threading.Thread(target=db.fetch_val, args=("SELECT count(*) FROM t",))
        thread.start()
        thread.join()


def _db(tmp_path: Path) -> awaitdb.SyncDatabase:
    db = awaitdb.connect_sync(f"sqlite:///{tmp_path / 'readers.db'}")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.fetch_val("SELECT count(*) FROM t")  # this thread's reader: opened before counting
    return db


@needs_proc
def test_descriptors_stay_bounded_after_200_short_lived_threads(tmp_path: Path) -> None:
    with _db(tmp_path) as db:
        _read_in_threads(db, 10)  # files SQLite opens once per database (shm...) are open now
        before = _open_fds()
        _read_in_threads(db, 200)
        assert _open_fds() - before <= 2  # was +128: one reader per thread, up to 64 x 2 fds


def test_a_new_thread_still_gets_a_thread_reader_after_64_dead_threads(tmp_path: Path) -> None:
    with _db(tmp_path) as db:
        acquisitions = db.stats().acquisitions
        _read_in_threads(db, MAX_THREAD_READERS + 6)
        # Every read ran on its thread's own reader: none went through the pooled readers.
        assert db.stats().acquisitions == acquisitions


def test_close_from_another_thread_closes_a_live_threads_reader(tmp_path: Path) -> None:
    db = _db(tmp_path)
    ready, go = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        db.fetch_val("SELECT count(*) FROM t")
        ready.set()
        go.wait()
        try:
            db.fetch_val("SELECT count(*) FROM t")
        except BaseException as exc:  # checked below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    ready.wait()
    backend = db._backend
    live = [c for c in backend._all if c is not backend._writer]  # type: ignore[attr-defined]
    db.close()
    go.set()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], awaitdb.InterfaceError)
    for conn in live:  # every reader, the live thread's included, is closed
        with pytest.raises(Exception, match="closed"):
            conn.conn.execute("SELECT 1")
