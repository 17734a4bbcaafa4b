"""Conformance: ``run_in_transaction`` retries are counted in ``stats().retries``.

Written once against the async face; tools/async_to_sync.py generates the sync twin.
"""

from __future__ import annotations

import awaitdb


async def test_run_in_transaction_counts_retries(adb: awaitdb.Database) -> None:
    await adb.execute("CREATE TABLE t (x INTEGER)")
    attempts: list[int] = []

    async def work(tx: awaitdb.Transaction) -> int:
        attempts.append(1)
        await tx.execute("INSERT INTO t (x) VALUES (:x)", {"x": len(attempts)})
        if len(attempts) < 3:
            raise awaitdb.DatabaseBusy("the file is locked (simulated)")
        return len(attempts)

    assert adb.stats().retries == 0
    assert await adb.run_in_transaction(work, backoff=0.001) == 3
    assert adb.stats().retries == 2
    assert await adb.fetch_all("SELECT x FROM t") == [(3,)]  # the failed attempts rolled back
    assert adb.stats().as_dict()["retries"] == 2
