"""What ``svcs`` lacks for awaitdb's long-lived objects: lazy async singletons it closes.

``svcs`` (the service locator this project builds on, in the ``awaitdb[web]`` extra) calls a
factory once per container, i.e. once per request. A ``Database``, a jobs queue or an event bus
must instead be opened once, on first use, by whichever request gets there first, and closed
when the registry closes::

    registry = svcs.Registry()
    awaitdb.services.register_database(registry, "sqlite:///app.db")   # nothing opened yet
    awaitdb.services.register_singleton(registry, Queue, lambda c: Queue(db_of(c)))
    async with svcs.Container(registry) as c:
        db = await c.aget(awaitdb.Database)        # opened here, once, under a lock
    await registry.aclose()                        # Queue closed, then the Database

Shutdown runs in reverse registration order (``svcs`` runs ``on_registry_close`` callbacks
backwards), so register what others depend on first. Tests override a service with
``registry.register_value(...)`` or ``container.register_local_value(...)``, as usual in svcs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

try:
    import svcs
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("awaitdb.services needs svcs: pip install 'awaitdb[web]' (or svcs)") from exc

from ._async.database import Database
from ._connect import connect
from ._errors import InterfaceError

__all__ = ["Singleton", "close_service", "register_database", "register_singleton"]

T = TypeVar("T")


async def close_service(value: object) -> None:
    """Close anything the usual way: ``aclose()``, ``close()`` (awaited if needed), or
    ``__aexit__``; a value with none of them is left alone."""
    for name in ("aclose", "close"):
        method = getattr(value, name, None)
        if callable(method):
            result = method()
            if inspect.isawaitable(result):
                await result
            return
    aexit = getattr(value, "__aexit__", None)
    if callable(aexit):
        await aexit(None, None, None)


class Singleton(Generic[T]):
    """One lazily opened value shared by every container; opened at most once, closed once."""

    def __init__(
        self,
        open: Callable[[svcs.Container], T | Awaitable[T]],
        close: Callable[[T], Awaitable[None]] = close_service,
    ) -> None:
        self._open = open
        self._close = close
        self._value: T | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        return self._value is not None

    async def get(self, svcs_container: svcs.Container) -> T:
        """The value, opening it on first use (concurrent first callers wait for one open)."""
        value = self._value
        if value is not None:
            return value
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise InterfaceError("this service's registry is closed")
            if self._value is None:
                opened = self._open(svcs_container)
                if inspect.isawaitable(opened):
                    opened = await opened
                self._value = opened
            assert self._value is not None
            return self._value

    async def aclose(self) -> None:
        """Close the value if it was ever opened; later ``get`` calls fail."""
        self._closed = True
        value, self._value = self._value, None
        if value is not None:
            await self._close(value)


def register_singleton(
    registry: svcs.Registry,
    svc_type: type[T],
    open: Callable[[svcs.Container], T | Awaitable[T]],
    *,
    close: Callable[[T], Awaitable[None]] = close_service,
    ping: Callable[[T], Any] | None = None,
) -> Singleton[T]:
    """Register ``svc_type`` as a lazy singleton: ``open(container)`` on first ``aget``,
    ``close(value)`` when the registry closes. Returns the ``Singleton`` (for ``opened``)."""
    singleton: Singleton[T] = Singleton(open, close)
    registry.register_factory(
        svc_type,
        singleton.get,
        enter=False,  # never let a container close a shared value at the end of a request
        ping=ping,
        on_registry_close=singleton.aclose,
    )
    return singleton


async def _ping_database(db: Database) -> None:
    await db.fetch_val("SELECT 1")


def register_database(
    registry: svcs.Registry,
    url: str | None = None,
    *,
    svc_type: type[Any] = Database,
    **options: Any,
) -> Singleton[Database]:
    """Register a ``Database`` opened on first use with ``awaitdb.connect(url, **options)``,
    closed when the registry closes, with a ``SELECT 1`` health ping. A bad URL or option
    fails here, at registration, not at the first request."""
    if url is not None and not isinstance(url, str):
        raise InterfaceError(f"url must be a string, not {type(url).__name__}")
    connecting = connect(url, **options)  # validates now; each await opens a database

    async def open_database(_: svcs.Container) -> Database:
        return await connecting

    async def close_database(db: Database) -> None:
        await db.close()

    return register_singleton(
        registry, svc_type, open_database, close=close_database, ping=_ping_database
    )
