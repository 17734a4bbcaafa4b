"""PostgreSQL records built in bulk from asyncpg rows are ordinary ``Record`` objects."""

from __future__ import annotations

import json
import pickle

import pytest

import awaitdb

pytestmark = pytest.mark.postgresql


async def test_fetch_all_records_behave_like_every_record(pg_url: str) -> None:
    """Records built from asyncpg rows in bulk (fetch_all, iterate) are ordinary Records."""
    sql = "SELECT g AS id, 'n' || g AS name, NULL::text AS gone FROM generate_series(1, 1500) g"
    async with awaitdb.connect(pg_url) as db:
        rows = await db.fetch_all(sql)  # past the GC-pause threshold: the bulk path
        streamed = [r async for r in db.iterate(sql, batch_size=500)]
        one = await db.fetch_one(sql)
    assert len(rows) == 1500 and rows == streamed
    first = rows[0]
    assert type(first) is type(one) and isinstance(first, awaitdb.Record)
    assert first == one == (1, "n1", None) and isinstance(first, tuple)
    assert first["name"] == first[1] == "n1" and first.keys() == ("id", "name", "gone")
    assert dict(first) == {"id": 1, "name": "n1", "gone": None}
    assert json.dumps(first) == '[1, "n1", null]'
    assert pickle.loads(pickle.dumps(first)) == first
    assert repr(first) == "<Record id=1 name='n1' gone=None>"
