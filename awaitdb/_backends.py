"""Open the backend for a validated ``Config``, for each face, through its dialect."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._config import Config
from ._dialects import dialect_for

if TYPE_CHECKING:
    from ._async.backend import Backend
    from ._sync.backend import SyncBackend

__all__ = ["open_backend", "open_backend_sync"]


async def open_backend(config: Config) -> Backend:
    """Open the async backend for ``config.scheme``."""
    return await dialect_for(config.scheme).open_async(config)


def open_backend_sync(config: Config) -> SyncBackend:
    """Open the sync backend for ``config.scheme``."""
    return dialect_for(config.scheme).open_sync(config)
