"""``connect()`` and ``connect_sync()``: the two front doors.

Opening is where ``migrations=`` is handled: the database opens, then the migrator (loaded only
when asked for) applies what is pending on that same database, through its public API. The sync
face runs the generated sync migrator on the ``SyncDatabase`` itself: no event loop, no second
pool. A failed migration closes the database before the error propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from ._async.database import Database, open_database
from ._config import Config, parse_config
from ._sync.database import SyncDatabase, open_database_sync

__all__ = ["connect", "connect_sync"]


class Connecting:
    """What ``connect()`` returns: ``await`` it for a ``Database``, or ``async with`` it.

    Un-awaited, it can also be handed to what opens it lazily (``jobs.Queue`` at module level).
    """

    __slots__ = ("_config", "_db", "_shared")

    def __init__(self, url: str | None, options: dict[str, Any]) -> None:
        self._config = parse_config(url, **options)  # bad URLs and options fail right here
        self._db: Database | None = None
        self._shared: asyncio.Future[Database] | None = None

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``, known before anything is opened."""
        return self._config.scheme

    async def shared(self) -> Database:
        """The one database opened for every lazy user of this object, opened on first call.

        A failed open is not remembered: the next call tries again. Its users close it.
        """
        future = self._shared
        if future is None or (future.done() and future.exception() is not None):
            future = self._shared = asyncio.ensure_future(_open(self._config))
        return await asyncio.shield(future)

    def __await__(self) -> Generator[Any, None, Database]:
        return _open(self._config).__await__()

    async def __aenter__(self) -> Database:
        self._db = await _open(self._config)
        return self._db

    async def __aexit__(self, *exc_info: object) -> None:
        if self._db is not None:
            await self._db.close()


def connect(url: str | None = None, **options: Any) -> Connecting:
    """Open a database: ``db = await connect(url)`` or ``async with connect(url) as db``.

    ``url`` defaults to ``$AWAITDB_URL``, then ``sqlite:///awaitdb.sqlite3``. Options (also
    accepted in the URL's query string) are listed in ``docs/reference.md``.
    """
    return Connecting(url, options)


def connect_sync(url: str | None = None, **options: Any) -> SyncDatabase:
    """The sync face: same methods, options and semantics as ``connect``, without ``await``."""
    return _open_sync(parse_config(url, **options))


async def _open(config: Config) -> Database:
    """Open ``config``'s database, then apply its ``migrations=`` folder, if any."""
    db = await open_database(config)
    directory = config.get("migrations", None)
    if directory:
        try:
            from ._migrate.runner import migrate

            db._migrations_applied = tuple((await migrate(db, directory)).applied)
        except BaseException:
            await db.close()
            raise
    return db


def _open_sync(config: Config) -> SyncDatabase:
    """The sync twin of ``_open``: the sync migrator runs on the ``SyncDatabase`` it opened."""
    db = open_database_sync(config)
    directory = config.get("migrations", None)
    if directory:
        try:
            from ._migrate.runner_sync import migrate as migrate_sync

            db._migrations_applied = tuple(migrate_sync(db, directory).applied)
        except BaseException:
            db.close()
            raise
    return db
