"""Wake-ups: tell waiting tasks, in this process and in others, that a channel has news.

Features that wait for rows to appear (jobs, event streams) subscribe to a channel and sleep
until someone notifies it, instead of polling the database. One ``Waker`` serves each
``Database``; ``waker_for(db)`` finds it, the backend's half coming from its dialect
(``load("wakeup")``, in the backend package's ``wakeup.py``)::

    Waker                                  (waker_for(db): one per Database)
    ├── await notify(channel)              cross-process news; inside a transaction it is sent
    │                                      at COMMIT and dropped on rollback
    ├── after_commit(channel)              this process only: at once, or after the current
    │                                      transaction commits
    ├── wake_local(channel)                this process only, at once
    ├── await subscribe(channel) -> Subscription
    │       ├── await wait(timeout) -> bool    True when notified since the last wait
    │       └── close()
    └── await close()                      by db.close(): ends every subscription and the
                                           backend's listener (task, connection)

    each backend's half: awaitdb/_<pkg>/wakeup.py (in-process futures plus a file watcher, or
    LISTEN/NOTIFY on a dedicated connection)

A subscription is level-triggered: news that arrives while its owner is busy is kept until the
next ``wait``, so the pattern "subscribe, then loop: look for work, wait" never misses a wake-up.
Wake-ups are hints, never data: a waiter always re-reads the database, so a spurious wake-up costs
one query and a lost one costs at most the waiter's own timeout (the polling fallback).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from ._dialects import load_feature
from ._errors import InterfaceError

if TYPE_CHECKING:
    from ._async.database import Database

__all__ = ["Subscription", "Waker", "waker_for"]

_wakers: weakref.WeakKeyDictionary[Any, Waker] = weakref.WeakKeyDictionary()


def waker_for(db: Database) -> Waker:
    """The waker of ``db``, created on first use (one per Database); closed with ``db``."""
    waker = _wakers.get(db)
    if waker is None or waker.closed:
        if db.closed:
            raise InterfaceError("the database is closed")
        cls: type[Waker] | None = load_feature(db.backend, "wakeup")
        if cls is None:
            raise InterfaceError(f"no wake-up mechanism for the {db.backend!r} backend")
        waker = cls(db)
        _wakers[db] = waker
        db._close_hooks.append(waker.close)
    return waker


class Subscription:
    """Interest in one channel; ``wait`` returns at once when news came since the last wait."""

    __slots__ = ("_closed", "_future", "_pending", "_waker", "channel")

    def __init__(self, waker: Waker, channel: str) -> None:
        self._waker = waker
        self.channel = channel
        self._pending = False
        self._future: asyncio.Future[None] | None = None
        self._closed = False

    def _wake(self) -> None:
        self._pending = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        """Sleep until notified or ``timeout`` seconds; True when notified (news is consumed).

        While the backend cannot deliver cross-process news (its listener is down), the wait is
        cut to the waker's ``fallback_interval`` so that the caller polls instead.
        """
        if self._closed:
            raise InterfaceError("this subscription is closed")
        if not self._pending:
            fallback = self._waker.fallback_interval
            if fallback is not None:
                timeout = fallback if timeout is None else min(timeout, fallback)
            if timeout is None or timeout > 0:
                loop = asyncio.get_running_loop()
                future = self._future = loop.create_future()
                handle = None if timeout is None else loop.call_later(timeout, _expire, future)
                try:
                    await future
                finally:
                    self._future = None
                    if handle is not None:
                        handle.cancel()
        woken, self._pending = self._pending, False
        return woken

    def close(self) -> None:
        """Stop listening; the waker releases its listener when no subscription is left."""
        if not self._closed:
            self._closed = True
            self._waker._unsubscribe(self)
            if self._future is not None and not self._future.done():
                self._future.set_result(None)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Waker:
    """In-process wake-ups; each backend adds how news crosses processes (see the module doc)."""

    #: Set by a backend while cross-process news cannot arrive: waits are cut to this interval.
    fallback_interval: float | None = None

    def __init__(self, db: Database) -> None:
        self._db = db
        self._subs: dict[str, set[Subscription]] = {}
        self.closed = False

    # -- in-process --------------------------------------------------------------------------

    def wake_local(self, channel: str) -> None:
        """Wake this process's subscribers of ``channel`` now."""
        for sub in self._subs.get(channel, ()):
            sub._wake()

    def wake_all_local(self) -> None:
        """Wake every subscriber in this process (news of unknown channel arrived)."""
        for subs in self._subs.values():
            for sub in subs:
                sub._wake()

    def after_commit(self, channel: str) -> None:
        """Wake local subscribers after the current transaction commits, or now outside one."""
        from ._async.transaction import Transaction

        scope = self._db._scope.get()
        if isinstance(scope, Transaction) and scope._is_active():
            scope.on_commit(lambda: self.wake_local(channel))
        else:
            self.wake_local(channel)

    async def close(self) -> None:
        """End every subscription (waiters return) and stop the backend's listener."""
        if self.closed:
            return
        self.closed = True
        if _wakers.get(self._db) is self:
            del _wakers[self._db]  # it holds the db: the entry would keep both alive
        subs = [sub for subs in self._subs.values() for sub in subs]
        self._subs.clear()
        for sub in subs:
            sub._closed = True
            sub._wake()
        await self._shutdown()

    # -- cross-process (backends override) ---------------------------------------------------

    async def _shutdown(self) -> None:
        """Stop receiving cross-process news and release what that holds (``close``)."""

    async def notify(self, channel: str) -> None:
        """Tell subscribers everywhere; inside a transaction, only if and when it commits."""
        self.after_commit(channel)

    async def _listen(self, channel: str) -> None:
        """Start receiving cross-process news for ``channel`` (first subscriber)."""

    def _unlisten(self, channel: str) -> None:
        """Stop receiving news for ``channel`` (last subscriber left)."""

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(self, channel: str) -> Subscription:
        """A subscription to ``channel``; close it when done."""
        if not channel or not isinstance(channel, str):
            raise InterfaceError(f"a channel name must be a non-empty string, got {channel!r}")
        if self.closed:
            raise InterfaceError("the database is closed")
        sub = Subscription(self, channel)
        first = channel not in self._subs
        self._subs.setdefault(channel, set()).add(sub)
        if first:
            try:
                await self._listen(channel)
            except BaseException:
                self._unsubscribe(sub)
                raise
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.channel)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.channel]
            self._unlisten(sub.channel)
