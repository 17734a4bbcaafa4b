"""Subprocess roles for the stream's crash tests (tests/test_events_stream.py).

python tests/events_worker.py publish URL NAME COUNT   publish NAME's events 0..COUNT-1, one
                                                        commit each; every third attempt is
                                                        first tried in a transaction that rolls
                                                        back. Resumes after the last committed.
python tests/events_worker.py consume URL GROUP OUT     consume GROUP as consumer GROUP-c,
                                                        appending "publisher seq id" lines to OUT
python tests/events_worker.py publish-one URL NAME      publish one event and exit
"""

from __future__ import annotations

import asyncio
import os
import sys

import awaitdb
from awaitdb import events


class Rollback(Exception):
    pass


async def publish(url: str, name: str, count: int) -> None:
    async with awaitdb.connect(url) as db:
        stream = events.Stream(db, publisher=name)
        seq = await db.fetch_val(
            "SELECT count(*) FROM awaitdb_events WHERE publisher = :p", {"p": name}
        )
        attempt = 0
        while seq < count:
            attempt += 1
            if attempt % 3 == 0:
                try:
                    async with db.transaction():
                        await stream.publish("crash.event", {"seq": seq, "rolled_back": True})
                        raise Rollback
                except Rollback:
                    pass
            async with db.transaction():
                await stream.publish("crash.event", {"seq": seq, "rolled_back": False})
            seq += 1


async def consume(url: str, group: str, out: str) -> None:
    async with awaitdb.connect(url) as db:
        stream = events.Stream(db)
        with open(out, "a", encoding="utf-8") as f:
            f.write("\n")  # ends a line an earlier, killed consumer may have left cut
            async with stream.subscribe(
                "crash.*", group=group, consumer=f"{group}-c", batch_size=7, poll_interval=0.5
            ) as consumer:
                async for event in consumer:
                    rb = int(event.data["rolled_back"])
                    f.write(f"{event.publisher} {event.data['seq']} {event.id} {rb}\n")
                    f.flush()


async def publish_one(url: str, name: str) -> None:
    async with awaitdb.connect(url) as db:
        await events.Stream(db).publish(name, {"from": os.getpid()})


if __name__ == "__main__":
    role, url, *rest = sys.argv[1:]
    if role == "publish":
        asyncio.run(publish(url, rest[0], int(rest[1])))
    elif role == "consume":
        asyncio.run(consume(url, rest[0], rest[1]))
    else:
        asyncio.run(publish_one(url, rest[0]))
