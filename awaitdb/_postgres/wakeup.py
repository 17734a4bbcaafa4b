"""PostgreSQL wake-ups: ``NOTIFY`` in the sender's transaction, ``LISTEN`` on its own connection.

``notify`` runs ``pg_notify`` through ``db.execute``, so inside a transaction block it is part of
that transaction and PostgreSQL delivers it only at COMMIT. Subscribers are served by one
connection per waker that is not taken from the pool (a pooled connection is reset on release,
which would drop its ``LISTEN``s). When that connection is lost, the waker reconnects with backoff,
listens again and wakes everyone (news may have been missed); until it is back, waits are cut to
``FALLBACK_INTERVAL`` so that subscribers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from .._wakeup import Waker

if TYPE_CHECKING:
    from .._async.database import Database

__all__ = ["FALLBACK_INTERVAL", "PostgresWaker"]

logger = logging.getLogger("awaitdb")

#: Longest wait while the LISTEN connection is down (subscribers poll at this interval).
FALLBACK_INTERVAL = 0.5


class PostgresWaker(Waker):
    """``pg_notify`` to send; one dedicated, self-healing ``LISTEN`` connection to receive."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._conn: Any = None
        self._supervisor: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._listening: set[str] = set()
        self._lock = asyncio.Lock()  # one statement at a time on the LISTEN connection
        self.fallback_interval = FALLBACK_INTERVAL  # until the listener is up

    async def notify(self, channel: str) -> None:
        await self._db.execute("SELECT pg_notify(:channel, '')", {"channel": channel})
        self.after_commit(channel)

    async def _listen(self, channel: str) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._lost.clear()
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name="awaitdb-pg-listener"
            )
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.is_closed() and channel not in self._listening:
                try:
                    await conn.add_listener(channel, self._on_notify)
                    self._listening.add(channel)
                except Exception:  # the supervisor reconnects and listens again
                    logger.debug("LISTEN %s failed", channel, exc_info=True)
                    self._lost.set()

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.wake_local(channel)

    def _on_terminate(self, conn: Any) -> None:
        self._lost.set()

    async def _connect(self) -> Any:
        import asyncpg

        config = self._db._config
        options: dict[str, Any] = {}
        if config.get("ssl", None) is not None:
            options["ssl"] = config.options["ssl"]
        conn = await asyncpg.connect(config.url, timeout=10, **options)
        conn.add_termination_listener(self._on_terminate)
        return conn

    async def _supervise(self) -> None:
        delay = 0.05
        try:
            while self._subs:
                try:
                    conn = await self._connect()
                except Exception:
                    logger.warning("LISTEN connection failed; polling meanwhile", exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self._conn = conn
                self._lost.clear()
                try:
                    async with self._lock:
                        self._listening = set()
                        for channel in list(self._subs):
                            await conn.add_listener(channel, self._on_notify)
                            self._listening.add(channel)
                    self.fallback_interval = None
                    delay = 0.05
                    self.wake_all_local()  # anything sent while we were not listening
                    await self._lost.wait()
                except Exception:
                    logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
                finally:
                    self.fallback_interval = FALLBACK_INTERVAL
                    self._conn = None
                    with contextlib.suppress(Exception):
                        conn.terminate()
                self.wake_all_local()
        finally:
            conn = self._conn
            self._conn = None
            if conn is not None:
                conn.terminate()

    def _unlisten(self, channel: str) -> None:
        self._listening.discard(channel)
        conn = self._conn
        if not self._subs:
            if self._supervisor is not None:
                self._supervisor.cancel()
                self._supervisor = None
            return
        if conn is not None and not conn.is_closed():
            task = asyncio.get_running_loop().create_task(self._remove(conn, channel))
            task.add_done_callback(_quiet)

    async def _remove(self, conn: Any, channel: str) -> None:
        async with self._lock:
            if channel not in self._subs and not conn.is_closed():
                await conn.remove_listener(channel, self._on_notify)


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("UNLISTEN failed", exc_info=task.exception())
