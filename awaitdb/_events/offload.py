"""The one way the bus runs a listener off the event loop (``off_loop=True``).

Everything that leaves the loop goes through ``run_off_loop``, which uses the project's shared
off-loop pool (``awaitdb.offload``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._offload import offload

__all__ = ["run_off_loop"]


async def run_off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on the shared bounded pool (``awaitdb.offload``); return its result."""
    return await offload(fn, *args)
