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
    raise InterfaceError(f"the {config.scheme} backend is not available yet")


def open_backend_sync(config: Config) -> SyncBackend:
    """Open the sync backend for ``config.scheme``."""
    if config.scheme == "sqlite":
        from ._sqlite.sync_backend import SyncSQLiteBackend

        return SyncSQLiteBackend.open(config)
    raise InterfaceError(f"the {config.scheme} backend is not available yet")
