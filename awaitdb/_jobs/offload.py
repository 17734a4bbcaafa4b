"""The one place where a plain ``def`` task leaves the event loop.

Every synchronous task body runs through ``run_off_loop``, on the service layer's shared bounded
pool (``awaitdb.offload``), never on the loop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .._offload import offload

__all__ = ["run_off_loop"]


async def run_off_loop(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(**kwargs)`` on a thread and await its result (context variables carried over)."""
    return await offload(functools.partial(fn, **kwargs))
