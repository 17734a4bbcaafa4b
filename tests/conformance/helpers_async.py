"""Helpers for the conformance suite (async source; the sync twin is generated)."""

from __future__ import annotations

import awaitdb
from awaitdb._compat import asleep


async def settled_in_use(adb: awaitdb.Database) -> int:
    """Connections in use once background resets (after a cancellation) have finished.

    PostgreSQL connections interrupted mid-statement are rolled back in the background before
    they rejoin the pool; give that up to a second.
    """
    for _ in range(100):
        in_use: int = adb.stats().pool_in_use
        if in_use == 0:
            return 0
        await asleep(0.01)
    return in_use
