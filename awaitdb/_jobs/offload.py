"""The one place where a plain ``def`` task leaves the event loop.

Every synchronous task body runs through ``run_off_loop``, on a worker thread, never on the loop.
(When the service layer's ``awaitdb.offload`` lands, this function becomes a call to it.)
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any

__all__ = ["run_off_loop"]


async def run_off_loop(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(**kwargs)`` on a thread and await its result (context variables carried over)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(None, functools.partial(context.run, fn, **kwargs))
