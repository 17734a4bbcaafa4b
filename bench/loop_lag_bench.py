"""Event-loop lag during single big SQLite calls (issue 7, defects 15 and 16).

    .venv/bin/python bench/loop_lag_bench.py            # 5 repetitions of each case
    .venv/bin/python bench/loop_lag_bench.py --reps 3

Each case runs one call at a time, repeatedly, while a 1 ms ticker task measures how late the
loop wakes up; the table shows the worst lag during the first call (a statement awaitdb has not
seen yet), the median and the worst of the later calls' lags, and the median wall time per
call. The target: no single call holds the loop for more than 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Ticker

import awaitdb


async def _setup(db: awaitdb.Database) -> None:
    await db.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
    await db.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body JSON)")
    await db.execute("CREATE TABLE many (x INTEGER)")
    await db.execute("CREATE TABLE sink (a INTEGER, b TEXT)")
    await db.execute("INSERT INTO blobs (id, data) VALUES (1, :d)", {"d": b"x" * 50_000_000})
    body = {"items": [{"k": i, "v": "x" * 20} for i in range(250_000)]}
    await db.execute("INSERT INTO docs (id, body) VALUES (1, :b)", {"b": json.dumps(body)})
    await db.execute(
        "INSERT INTO many (x) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 3000000) SELECT x FROM c"
    )


def _cases(db: awaitdb.Database) -> dict[str, Callable[[], Awaitable[Any]]]:
    marks = ", ".join(f":p{i}" for i in range(10_000))
    wide_sql = f"SELECT count(*) FROM many WHERE x IN ({marks})"
    wide = {f"p{i}": i for i in range(10_000)}
    rows = [{"a": i, "b": "row"} for i in range(200_000)]
    return {
        "50 MB blob fetch_val": lambda: db.fetch_val("SELECT data FROM blobs WHERE id = 1"),
        "10 MB JSON fetch_val": lambda: db.fetch_val("SELECT body FROM docs WHERE id = 1"),
        "3M-row count(*)": lambda: db.fetch_val("SELECT count(*) FROM many"),
        "10,000-parameter read": lambda: db.fetch_val(wide_sql, wide),
        "execute_many 200k rows": lambda: db.execute_many(
            "INSERT INTO sink (a, b) VALUES (:a, :b)", rows
        ),
        "point select (hot path)": lambda: db.fetch_val("SELECT x FROM many WHERE rowid = 7"),
    }


async def main(reps: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = await awaitdb.connect(f"sqlite:///{folder}/lag.db")
        try:
            await _setup(db)
            print(f"# loop lag per call, {reps} repetitions, Python {sys.version.split()[0]}")
            print("| case | lag ms, 1st call | later calls: median lag ms | worst | wall ms/call |")
            print("| --- | --- | --- | --- | --- |")
            cases = _cases(db)
            gc.collect()
            gc.freeze()  # the cases' own 200k rows must not make garbage collection the lag
            for name, call in cases.items():
                lags, walls = [], []
                for _ in range(reps):
                    with Ticker() as ticker:
                        await asyncio.sleep(0.005)
                        start = time.perf_counter()
                        await call()
                        walls.append(time.perf_counter() - start)
                        await asyncio.sleep(0.005)
                    lags.append(max(ticker.samples, default=0.0) * 1000)
                wall = statistics.median(walls) * 1000
                later = lags[1:] or [0.0]
                print(
                    f"| {name} | {lags[0]:.1f} | {statistics.median(later):.1f} "
                    f"| {max(later):.1f} | {wall:.1f} |"
                )
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    asyncio.run(main(parser.parse_args().reps))
