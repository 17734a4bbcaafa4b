"""SQLite wake-ups: in-process at once; across processes by a cheap ``PRAGMA data_version`` check.

Inside one process ``notify`` wakes subscribers as soon as the transaction commits. Another
process's commit is seen by a watcher that, while anyone subscribes, asks a dedicated connection
for ``PRAGMA data_version`` every ``WATCH_INTERVAL`` seconds (a read of the shared WAL index:
microseconds, no disk I/O) and wakes every subscriber when it changed. An in-memory database has
no other process, so it has no watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from typing import TYPE_CHECKING

from .._wakeup import Waker

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["WATCH_INTERVAL", "SQLiteWaker"]

logger = logging.getLogger("awaitdb")

#: Seconds between two cross-process change checks (the latency of news from another process).
WATCH_INTERVAL = 0.05


class SQLiteWaker(Waker):
    """In-process futures plus a ``data_version`` watcher for commits by other processes."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        config = db._config
        self._path = None if config.is_memory else os.path.abspath(config.path)
        self._watcher: asyncio.Task[None] | None = None

    async def _listen(self, channel: str) -> None:
        if self._path is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(self._path), name="awaitdb-sqlite-watcher"
            )

    async def _watch(self, path: str) -> None:
        conn: sqlite3.Connection | None = None
        last: int | None = None
        try:
            while self._subs:
                await asyncio.sleep(WATCH_INTERVAL)
                try:
                    if conn is None:
                        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error:
                    # Locked for a moment or the file is being replaced: count it as a change.
                    logger.debug("data_version check failed", exc_info=True)
                    if conn is not None:
                        conn.close()
                        conn = None
                    version = None
                if version is None or (last is not None and version != last):
                    self.wake_all_local()
                last = version
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def _unlisten(self, channel: str) -> None:
        if not self._subs and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
