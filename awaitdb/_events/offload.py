"""The one way the bus runs a listener off the event loop (``off_loop=True``).

Everything that leaves the loop goes through ``run_off_loop`` so that it can be switched to the
project's shared off-loop helper in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["run_off_loop"]


async def run_off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a worker thread and return its result."""
    return await asyncio.to_thread(fn, *args)
