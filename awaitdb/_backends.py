"""Pick the backend for a URL scheme, for each face."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._config import Config
from ._errors import InterfaceError

if TYPE_CHECKING:
    from ._async.backend import Backend
    from ._sync.backend import SyncBackend

__all__ = ["open_backend", "open_backend_sync"]


async def open_backend(config: Config) -> Backend:
    """Open the async backend for ``config.scheme``."""
    if config.scheme == "sqlite":
        from ._sqlite.async_backend import SQLiteBackend

        return await SQLiteBackend.open(config)
    if config.scheme == "postgresql":
        _require("asyncpg")
        from ._postgres.async_backend import PostgresBackend

        return await PostgresBackend.open(config)
    raise InterfaceError(f"no backend for the {config.scheme!r} scheme")


def open_backend_sync(config: Config) -> SyncBackend:
    """Open the sync backend for ``config.scheme``."""
    if config.scheme == "sqlite":
        from ._sqlite.sync_backend import SyncSQLiteBackend

        return SyncSQLiteBackend.open(config)
    if config.scheme == "postgresql":
        _require("psycopg")
        from ._postgres.sync_backend import SyncPostgresBackend

        return SyncPostgresBackend.open(config)
    raise InterfaceError(f"no backend for the {config.scheme!r} scheme")


def _require(module: str) -> None:
    """A clear error when the PostgreSQL extra is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InterfaceError(
            f"PostgreSQL needs the {module!r} package: pip install 'awaitdb[postgresql]'"
        )
