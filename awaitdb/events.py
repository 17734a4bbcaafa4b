"""Events: an in-process bus and a durable stream, both tied to transactions.

from awaitdb import events

bus = events.Bus(db=db)                          # inside db.transaction(): after COMMIT only
bus.on("order.*", audit)                          # dotted-prefix wildcard; sync or async
report = await bus.emit("order.paid", {"id": 7})  # runs the listeners, reports failures

stream = events.Stream(db)                        # durable, in db's built-in tables
await stream.publish("order.paid", {"id": 7})     # inside a transaction: only if it commits
async with stream.subscribe("order.*", group="billing") as consumer:
    async for event in consumer: ...              # at-least-once per group

See docs/events.md for the delivery guarantees.
"""

from __future__ import annotations

from ._events.bus import Bus, BusStats, EmitReport, ListenerFailure, ListenerStats
from ._events.event import Event
from ._events.stream import Consumer, GroupStats, Stream, StreamStats

__all__ = [
    "Bus",
    "BusStats",
    "Consumer",
    "EmitReport",
    "Event",
    "GroupStats",
    "ListenerFailure",
    "ListenerStats",
    "Stream",
    "StreamStats",
]
