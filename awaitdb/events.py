"""Events: an in-process bus and a durable stream, both tied to transactions.

from awaitdb import events

bus = events.Bus(db=db)                          # inside db.transaction(): after COMMIT only
bus.on("order.*", audit)                          # dotted-prefix wildcard; sync or async
report = await bus.emit("order.paid", {"id": 7})  # runs the listeners, reports failures

See docs/events.md for the delivery guarantees.
"""

from __future__ import annotations

from ._events.bus import Bus, BusStats, EmitReport, ListenerFailure, ListenerStats
from ._events.event import Event

__all__ = [
    "Bus",
    "BusStats",
    "EmitReport",
    "Event",
    "ListenerFailure",
    "ListenerStats",
]
