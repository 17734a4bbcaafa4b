"""``Stream``: a durable event stream in the application's database, consumed by groups.

An event is a row of ``awaitdb_events``, inserted by ``publish`` in the caller's transaction
(so it exists only if that commits). Each group has a cursor in ``awaitdb_events_groups``. A
consumer takes the next batch in one short transaction: it locks its group's row, records the
batch as a *claim* ``(from, to]`` with a lease in ``awaitdb_events_claims``, and moves the
cursor to ``to``. It deletes the claim (the acknowledgement) in the transaction that takes its
next batch. A claim whose lease ran out, or one left by an earlier consumer of the same name,
is taken over and delivered again. So::

    event  published ── committed ── inside a group's horizon ── claimed by a consumer
                                                                 ├── done: claim deleted
                                                                 └── consumer died: lease runs
                                                                     out, claim taken over,
                                                                     delivered again

Every row at or below a claim's ``to`` was already final when it was claimed (see the backend
modules for the horizon), so a claim always denotes the same events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import InterfaceError
from .._wakeup import Subscription, waker_for
from .event import Event, check_name, check_pattern, pattern_prefix
from .schema import bind, dialect_for, ensure_schema

if TYPE_CHECKING:
    from .._async.database import Database
    from .bus import Bus

__all__ = ["CHANNEL", "Consumer", "GroupStats", "Stream", "StreamStats"]

logger = logging.getLogger("awaitdb.events")

#: The wake-up channel every publish notifies.
CHANNEL = "awaitdb_events"

#: A process sends NOTIFY inside at most one publishing transaction per interval (seconds);
#: publishes in between are followed by one coalesced NOTIFY after they commit.
NOTIFY_INTERVAL = 0.002

Position = tuple[int, int]


@dataclass(frozen=True)
class GroupStats:
    """One group: pattern, cursor, open claims, and lag (matching events not yet finished)."""

    group: str
    pattern: str
    position: tuple[int, int]
    claims: int
    lag: int


@dataclass(frozen=True)
class StreamStats:
    """The stream: events stored, and every group."""

    events: int
    groups: list[GroupStats]


def _match_sql(pattern: str) -> tuple[str, dict[str, Any]]:
    text, prefix = pattern_prefix(pattern)
    if prefix and not text:
        return "", {}
    if prefix:
        return " AND substr(name, 1, :plen) = :pat", {"plen": len(text), "pat": text}
    return " AND name = :pat", {"pat": text}


class Stream:
    """Durable events in ``db``: ``publish`` in transactions, ``subscribe`` by group.

    ``publisher`` names this process in stored events (default ``host:pid``).
    """

    def __init__(self, db: Database, *, publisher: str | None = None) -> None:
        self._db = db
        self._sql = dialect_for(db)
        self._ready = False
        self._publisher = publisher or f"{socket.gethostname()}:{os.getpid()}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._last_notify = -1.0
        self._notify_due = False
        self._trailer: asyncio.Task[None] | None = None

    @property
    def db(self) -> Database:
        return self._db

    async def _setup(self) -> None:
        if not self._ready:
            self._ready = await ensure_schema(self._db, self._sql)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, name: str, data: Any = None) -> int:
        """Store an event; inside a transaction it exists (and wakes consumers) only on COMMIT.

        ``data`` must be JSON-serialisable. Returns the event's id.
        """
        check_name(name)
        try:
            text = json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise InterfaceError(
                f"event data for {name!r} is not JSON-serialisable: {exc}"
            ) from exc
        if not self._ready:
            await self._setup()
        db = self._db
        sql = self._sql
        statement, trailing = sql.publish_notify, False
        if sql.notify is not None:
            now = time.monotonic()
            if now - self._last_notify >= NOTIFY_INTERVAL:
                self._last_notify = now
            else:
                statement, trailing = sql.publish, True
        event_id: int = await db.fetch_val(
            statement,
            {"name": name, "data": text, "publisher": self._publisher, "at": time.time()},
        )
        waker_for(db).after_commit(CHANNEL)
        if trailing:
            tx = db.current_transaction()
            if tx is None:
                self._notify_soon()
            else:
                tx.on_commit(self._notify_soon)
        return event_id

    def _notify_soon(self) -> None:
        """After a publish that skipped NOTIFY committed: one coalesced NOTIFY, shortly."""
        self._notify_due = True
        if self._trailer is None or self._trailer.done():
            self._trailer = asyncio.get_running_loop().create_task(
                self._trail(), name="awaitdb-stream-notify"
            )
            self._tasks.add(self._trailer)
            self._trailer.add_done_callback(self._pump_done)

    async def _trail(self) -> None:
        db = self._db
        token = db._scope.set(None)  # its own autocommit statement
        try:
            while self._notify_due:
                wait = self._last_notify + NOTIFY_INTERVAL - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._notify_due = False
                self._last_notify = time.monotonic()
                await db.execute(self._sql.notify)
        finally:
            db._scope.reset(token)

    # -- consuming -------------------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str = "*",
        *,
        group: str,
        consumer: str | None = None,
        from_start: bool = False,
        batch_size: int = 100,
        lease: float = 30.0,
        poll_interval: float = 1.0,
    ) -> Consumer:
        """Events matching ``pattern`` for ``group``: an async iterator (and context manager).

        A new group starts after the newest event, or at the oldest kept one with
        ``from_start=True``. ``consumer`` names this consumer (give a restarted process the
        same name and it takes over its unfinished batch at once). A batch not finished within
        ``lease`` seconds is handed to another consumer of the group.
        """
        check_pattern(pattern)
        if not group or not isinstance(group, str):
            raise InterfaceError(f"a group name must be a non-empty string, got {group!r}")
        if batch_size < 1:
            raise InterfaceError("batch_size must be at least 1")
        if lease <= 0 or poll_interval <= 0:
            raise InterfaceError("lease and poll_interval must be positive numbers of seconds")
        return Consumer(
            self,
            pattern,
            group,
            consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            from_start,
            batch_size,
            lease,
            poll_interval,
        )

    async def create_group(
        self, group: str, pattern: str = "*", *, from_start: bool = False
    ) -> None:
        """Create ``group`` if it does not exist (its position then starts now, or at the start).

        An existing group keeps its position; creating it with another pattern is refused.
        """
        check_pattern(pattern)
        await self._setup()
        sql = self._sql
        db = self._db
        async with db.transaction():
            if from_start:
                cx, ci = 0, 0
            else:
                row = await db.fetch_one(sql.horizon)
                assert row is not None
                cx, ci = int(row[0]), int(row[1])
            await db.execute(
                sql.create_group,
                {"grp": group, "pattern": pattern, "cx": cx, "ci": ci, "at": time.time()},
            )
            existing = await db.fetch_val(
                "SELECT pattern FROM awaitdb_events_groups WHERE grp = :grp", {"grp": group}
            )
        if existing != pattern:
            raise InterfaceError(
                f"group {group!r} follows {existing!r}, not {pattern!r}: use another group name"
            )

    async def rewind(self, group: str) -> None:
        """Move ``group`` back to the oldest kept event (replay); its open claims are dropped."""
        await self._setup()
        async with self._db.transaction():
            await self._db.execute(
                "DELETE FROM awaitdb_events_claims WHERE grp = :grp", {"grp": group}
            )
            changed = await self._db.execute(
                "UPDATE awaitdb_events_groups SET cursor_xid = 0, cursor_id = 0 WHERE grp = :grp",
                {"grp": group},
            )
        if not changed:
            raise InterfaceError(f"no group named {group!r}")

    async def drop_group(self, group: str) -> bool:
        """Forget ``group`` and its position (it no longer holds back ``trim``)."""
        await self._setup()
        async with self._db.transaction():
            await self._db.execute(
                "DELETE FROM awaitdb_events_claims WHERE grp = :grp", {"grp": group}
            )
            return bool(
                await self._db.execute(
                    "DELETE FROM awaitdb_events_groups WHERE grp = :grp", {"grp": group}
                )
            )

    def deliver_to(
        self, bus: Bus, pattern: str = "*", *, group: str = "bus", **options: Any
    ) -> asyncio.Task[None]:
        """Feed ``bus`` from the stream in a background task (stopped by ``aclose``).

        Every process that uses the same ``group`` shares the events; give each kind of
        process its own group.
        """
        if self._closed:
            raise InterfaceError("the stream is closed")
        consumer = self.subscribe(pattern, group=group, **options)

        async def pump() -> None:
            async with consumer:
                async for event in consumer:
                    await bus.deliver(event)

        task = asyncio.get_running_loop().create_task(pump(), name=f"awaitdb-stream-{group}")
        self._tasks.add(task)
        task.add_done_callback(self._pump_done)
        return task

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stream delivery %s stopped", task.get_name(), exc_info=task.exception())

    # -- retention and state -----------------------------------------------------------------

    async def trim(self, older_than: float | dt.timedelta, *, force: bool = False) -> int:
        """Delete events older than ``older_than`` (seconds or a timedelta); returns how many.

        Events a group has not passed yet are kept, unless ``force=True``.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if not isinstance(seconds, (int, float)) or seconds < 0:
            raise InterfaceError("older_than must be a non-negative number of seconds or timedelta")
        await self._setup()
        sql = self._sql
        db = self._db
        cutoff = time.time() - seconds
        async with db.transaction():
            if force:
                return await db.execute(
                    "DELETE FROM awaitdb_events WHERE at < :cutoff", {"cutoff": cutoff}
                )
            floor: Position = sql.max_position
            for row in await db.fetch_all(
                "SELECT cursor_xid, cursor_id FROM awaitdb_events_groups UNION ALL"
                " SELECT from_xid, from_id FROM awaitdb_events_claims"
            ):
                floor = min(floor, (int(row[0]), int(row[1])))
            query = f"DELETE FROM awaitdb_events WHERE at < :cutoff AND {sql.at_or_before}"
            values = {"cutoff": cutoff, "cx": floor[0], "ci": floor[1]}
            return await db.execute(query, bind(query, values))

    async def stats(self) -> StreamStats:
        """Events stored and, per group, its position, open claims and lag."""
        await self._setup()
        db = self._db
        sql = self._sql
        groups = []
        for g in await db.fetch_all(
            "SELECT grp, pattern, cursor_xid, cursor_id FROM awaitdb_events_groups ORDER BY grp"
        ):
            claims = await db.fetch_all(
                "SELECT from_xid, from_id FROM awaitdb_events_claims WHERE grp = :grp",
                {"grp": g["grp"]},
            )
            cursor: Position = (int(g["cursor_xid"]), int(g["cursor_id"]))
            unfinished = min([cursor, *((int(c[0]), int(c[1])) for c in claims)])
            match, extra = _match_sql(g["pattern"])
            hi = sql.max_position
            query = f"SELECT count(*) FROM awaitdb_events WHERE {sql.after}{match}"
            values = {"cx": unfinished[0], "ci": unfinished[1], "hx": hi[0], "hi": hi[1]}
            lag = await db.fetch_val(query, bind(query, {**values, **extra}))
            groups.append(GroupStats(g["grp"], g["pattern"], cursor, len(claims), int(lag)))
        events = await db.fetch_val("SELECT count(*) FROM awaitdb_events")
        return StreamStats(int(events), groups)

    async def aclose(self) -> None:
        """Stop the ``deliver_to`` tasks (their unfinished batches are handed back)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            if task is not self._trailer:  # a pending NOTIFY is sent, not dropped
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class Consumer:
    """One consumer of a group: ``async for event in consumer`` (see ``Stream.subscribe``).

    Each event is done when the loop asks for the next one. Leaving an ``async with`` block
    hands the unfinished rest of the batch back at once; otherwise it is taken over when its
    lease runs out, or by the next consumer started under the same name.
    """

    def __init__(
        self,
        stream: Stream,
        pattern: str,
        group: str,
        name: str,
        from_start: bool,
        batch_size: int,
        lease: float,
        poll_interval: float,
    ) -> None:
        self._stream = stream
        self.pattern = pattern
        self.group = group
        self.name = name
        self._from_start = from_start
        self._batch_size = batch_size
        self._lease = lease
        self._poll = poll_interval
        self._buffer: deque[tuple[Position, Event]] = deque()
        self._claim: Position | None = None  # the ``from`` of the claim we hold
        self._done: Position | None = None  # the last event finished in that claim
        self._current: Position | None = None  # the event handed out and not yet finished
        self._sub: Subscription | None = None
        self._started = False
        self._took = False
        self._closed = False
        match, self._match_values = _match_sql(pattern)
        sql = stream._sql
        self._fetch_sql = (
            f"SELECT {sql.select_columns} FROM awaitdb_events WHERE {sql.after}{match}"
            f" {sql.order} LIMIT {batch_size}"
        )

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        if self._current is not None:
            self._done, self._current = self._current, None
        delay = 0.002
        while not self._buffer:
            if not self._started:
                await self._start()
            blocked = await self._take()
            if self._buffer:
                break
            assert self._sub is not None
            if blocked:  # committed events wait behind an older open transaction
                await self._sub.wait(delay)
                delay = min(delay * 2, 0.1)
            else:
                await self._sub.wait(self._poll)
        position, event = self._buffer.popleft()
        self._current = position
        return event

    async def _start(self) -> None:
        stream = self._stream
        self._sub = await waker_for(stream._db).subscribe(CHANNEL)
        await stream.create_group(self.group, self.pattern, from_start=self._from_start)
        self._started = True

    async def _take(self) -> bool:
        """Acknowledge the finished claim and take the next batch, in one transaction.

        Returns True when committed events wait behind the horizon (poll soon).
        """
        stream = self._stream
        db = stream._db
        sql = stream._sql
        now = time.time()
        rows: list[Any] = []
        taken: Position | None = None
        blocked = False
        async with db.transaction():
            row = await db.fetch_one(sql.lock_group, {"grp": self.group})
            if row is None:
                raise InterfaceError(f"group {self.group!r} was dropped while consuming")
            blocked = bool(row["blocked"])
            if self._claim is not None:  # every event of it is done: acknowledge
                await db.execute(
                    "DELETE FROM awaitdb_events_claims WHERE grp = :grp AND consumer = :c",
                    {"grp": self.group, "c": self.name},
                )
            oldest = row["oldest_lease"]
            # Expired claims, and (on our first take) claims left under our name.
            over = None
            if oldest is not None and (oldest < now or not self._took):
                over = await self._take_over(now)
            if over is not None:
                taken, rows = over
                blocked = False
            else:
                cursor: Position = (int(row["cursor_xid"]), int(row["cursor_id"]))
                horizon: Position = (int(row["hx"]), int(row["hi"]))
                if horizon > cursor:
                    values = {"cx": cursor[0], "ci": cursor[1], "hx": horizon[0], "hi": horizon[1]}
                    values.update(self._match_values)
                    rows = await db.fetch_all(self._fetch_sql, bind(self._fetch_sql, values))
                    new_cursor = horizon
                    if len(rows) == self._batch_size:
                        new_cursor = (int(rows[-1]["xid"]), int(rows[-1]["id"]))
                        blocked = False
                    if rows:
                        await db.execute(
                            "INSERT INTO awaitdb_events_claims (grp, from_xid, from_id, to_xid,"
                            " to_id, consumer, lease_until)"
                            " VALUES (:grp, :fx, :fi, :tx, :ti, :c, :lease)",
                            {
                                "grp": self.group,
                                "fx": cursor[0],
                                "fi": cursor[1],
                                "tx": new_cursor[0],
                                "ti": new_cursor[1],
                                "c": self.name,
                                "lease": now + self._lease,
                            },
                        )
                        taken = cursor
                    await db.execute(
                        "UPDATE awaitdb_events_groups SET cursor_xid = :cx, cursor_id = :ci"
                        " WHERE grp = :grp",
                        {"cx": new_cursor[0], "ci": new_cursor[1], "grp": self.group},
                    )
        # Committed: only now does our view change.
        self._took = True
        self._claim = taken
        self._done = None
        self._fill(rows)
        return blocked

    async def _take_over(self, now: float) -> tuple[Position, list[Any]] | None:
        """Take over an expired claim (or one left under our name): its start and events."""
        db = self._stream._db
        claim = await db.fetch_one(
            "SELECT from_xid, from_id, to_xid, to_id FROM awaitdb_events_claims"
            " WHERE grp = :grp AND (lease_until < :now OR consumer = :c)"
            " ORDER BY from_xid, from_id LIMIT 1",
            {"grp": self.group, "now": now, "c": self.name},
        )
        if claim is None:
            return None
        start: Position = (int(claim["from_xid"]), int(claim["from_id"]))
        end: Position = (int(claim["to_xid"]), int(claim["to_id"]))
        await db.execute(
            "UPDATE awaitdb_events_claims SET consumer = :c, lease_until = :lease,"
            " deliveries = deliveries + 1 WHERE grp = :grp AND from_xid = :fx AND from_id = :fi",
            {
                "c": self.name,
                "lease": now + self._lease,
                "grp": self.group,
                "fx": start[0],
                "fi": start[1],
            },
        )
        sql = self._stream._sql
        match, extra = _match_sql(self.pattern)
        query = (
            f"SELECT {sql.select_columns} FROM awaitdb_events WHERE {sql.after}{match} {sql.order}"
        )
        values = {"cx": start[0], "ci": start[1], "hx": end[0], "hi": end[1], **extra}
        rows = await db.fetch_all(query, bind(query, values))
        logger.info(
            "consumer %s of group %s takes over %d events after %s",
            self.name,
            self.group,
            len(rows),
            start,
        )
        return start, list(rows)

    def _fill(self, rows: list[Any]) -> None:
        decoded = self._stream._sql.data_is_decoded
        for r in rows:
            data = r["data"]
            event = Event(
                r["name"],
                data if decoded or data is None else json.loads(data),
                int(r["id"]),
                float(r["at"]),
                r["publisher"],
            )
            self._buffer.append(((int(r["xid"]), int(r["id"])), event))

    async def aclose(self) -> None:
        """Stop; the event handed out last counts as done, the rest goes back to the group."""
        await self._close(current_done=True)

    async def _close(self, *, current_done: bool) -> None:
        if self._closed:
            return
        self._closed = True
        sub, self._sub = self._sub, None
        if sub is not None:
            sub.close()
        if self._claim is None:
            return
        if self._current is not None and current_done:
            self._done, self._current = self._current, None
        left = bool(self._buffer) or self._current is not None
        start = self._done or self._claim
        db = self._stream._db
        try:
            if not left:
                await db.execute(
                    "DELETE FROM awaitdb_events_claims WHERE grp = :grp AND consumer = :c",
                    {"grp": self.group, "c": self.name},
                )
            else:
                await db.execute(
                    "UPDATE awaitdb_events_claims SET from_xid = :fx, from_id = :fi,"
                    " lease_until = 0 WHERE grp = :grp AND consumer = :c",
                    {"fx": start[0], "fi": start[1], "grp": self.group, "c": self.name},
                )
        except Exception:  # the lease still hands the batch over later
            logger.warning(
                "consumer %s could not hand its batch back; it will be taken over when its "
                "lease runs out",
                self.name,
                exc_info=True,
            )
        self._buffer.clear()
        self._claim = self._done = self._current = None

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Left by an exception (or a cancellation): the event being handled is not done.
        await self._close(current_done=exc_type is None)
