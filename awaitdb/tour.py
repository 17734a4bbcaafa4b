"""A two-minute tour of awaitdb on the embedded default (SQLite): ``python3 -m awaitdb.tour``.

Creates a database in a temporary folder (or at ``--url``), runs 200 concurrent inserts (group
commit), 1,000 concurrent point reads, a transaction whose nested savepoint rolls back, and
prints ``db.stats()``. Needs nothing but Python 3.11+.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import awaitdb
from awaitdb._dialects import default_url_at


async def tour(url: str) -> None:
    async with awaitdb.connect(url) as db:
        print(f"connected: {db!r}")
        await db.execute("DROP TABLE IF EXISTS accounts")
        await db.execute(
            "CREATE TABLE accounts ("
            " id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance NUMERIC NOT NULL,"
            " opened TIMESTAMPTZ)"
        )

        start = time.perf_counter()
        await asyncio.gather(
            *(
                db.execute(
                    "INSERT INTO accounts (id, owner, balance) VALUES (:id, :owner, :balance)",
                    {"id": i, "owner": f"user{i}", "balance": 100},
                )
                for i in range(200)
            )
        )
        took = (time.perf_counter() - start) * 1000
        stats = db.stats()
        print(
            f"200 concurrent inserts in {took:.1f} ms: {stats.group_commits} group commit(s) "
            f"carried {stats.grouped_writes} writes"
        )

        start = time.perf_counter()
        rows = await asyncio.gather(
            *(
                db.fetch_one("SELECT owner, balance FROM accounts WHERE id = :id", {"id": i % 200})
                for i in range(1000)
            )
        )
        took = (time.perf_counter() - start) * 1000
        assert all(row is not None for row in rows)
        print(f"1,000 concurrent point reads in {took:.1f} ms; first: {rows[0]!r}")

        async with db.transaction() as tx:
            await tx.execute("UPDATE accounts SET balance = balance - 30 WHERE id = 1")
            await tx.execute("UPDATE accounts SET balance = balance + 30 WHERE id = 2")
            tx.on_commit(lambda: print("on_commit: transfer 1 -> 2 committed"))
            try:
                async with db.transaction():  # a savepoint
                    await db.execute("UPDATE accounts SET balance = balance - 1000 WHERE id = 3")
                    raise ValueError("overdraft: roll the savepoint back")
            except ValueError as exc:
                print(f"savepoint rolled back: {exc}")

        balances = await db.fetch_all(
            "SELECT id, balance FROM accounts WHERE id IN (1, 2, 3) ORDER BY id"
        )
        print("balances:", {r["id"]: str(r["balance"]) for r in balances})

        try:
            await db.execute("INSERT INTO accounts (id, owner, balance) VALUES (1, 'dup', 0)")
        except awaitdb.UniqueViolation as exc:
            print(f"UniqueViolation sqlstate={exc.sqlstate} constraint={exc.constraint}")

        print("stats:")
        for key, value in db.stats().as_dict().items():
            print(f"  {key:22} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: a file in a temporary folder)")
    args = parser.parse_args()
    if args.url:
        asyncio.run(tour(args.url))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(tour(default_url_at(Path(folder) / "tour.db")))


if __name__ == "__main__":
    main()
