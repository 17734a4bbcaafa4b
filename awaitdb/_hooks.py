"""The per-connection setup hook, ``connect(..., on_connect=hook)``: run it, report failures.

The hook receives the driver's own connection, as asyncpg's ``init=`` and psycopg_pool's
``configure=`` do: a ``sqlite3.Connection`` (both SQLite faces), an ``asyncpg.Connection``
(async PostgreSQL) or a ``psycopg.Connection`` (sync PostgreSQL). It runs once on every
connection the pool opens, before the connection serves anyone. On the async face it may be a
plain function or a coroutine function; the sync face needs a plain function. A hook that
raises leaves no connection behind: the connection is closed and ``CannotConnect`` raised,
chained to the hook's exception.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ._errors import CannotConnect, InterfaceError

__all__ = ["parse_hook", "run_hook", "run_hook_from_thread", "run_hook_sync"]

Hook = Callable[[Any], Any]


def parse_hook(value: object) -> Hook | None:
    """Validate the ``on_connect`` option: a callable (never text from a URL) or ``None``."""
    if value is None:
        return None
    if not callable(value):
        raise ValueError(
            f"expected a function taking the driver's connection, got {type(value).__name__} "
            "(on_connect cannot come from a URL)"
        )
    return value


def _failed(hook: Hook, exc: BaseException) -> CannotConnect:
    name = getattr(hook, "__qualname__", repr(hook))
    return CannotConnect(f"the on_connect hook {name} failed: {type(exc).__name__}: {exc}")


def _close(conn: Any, close: Callable[[Any], Any] | None) -> None:
    try:
        result = (close or (lambda c: c.close()))(conn)
        if inspect.iscoroutine(result):  # pragma: no cover - every closer given is sync
            result.close()
    except Exception:  # noqa: BLE001 - the hook's failure is the error worth reporting
        pass


def run_hook_sync(hook: Hook | None, conn: Any, close: Callable[[Any], Any] | None = None) -> None:
    """Run ``hook(conn)`` in this thread; the sync face refuses a coroutine function."""
    if hook is None:
        return
    try:
        result = hook(conn)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise InterfaceError(
                "on_connect returned an awaitable: the sync face (connect_sync) needs a plain "
                "function; pass the async one to connect()"
            )
    except InterfaceError:
        _close(conn, close)
        raise
    except Exception as exc:
        _close(conn, close)
        raise _failed(hook, exc) from exc


def run_hook_from_thread(
    hook: Hook | None,
    conn: Any,
    loop: asyncio.AbstractEventLoop,
    close: Callable[[Any], Any] | None = None,
) -> None:
    """Run ``hook(conn)`` from a worker thread; a coroutine is awaited on ``loop``."""
    if hook is None:
        return
    try:
        result = hook(conn)
        if inspect.isawaitable(result):
            asyncio.run_coroutine_threadsafe(_wait(result), loop).result()
    except Exception as exc:
        _close(conn, close)
        raise _failed(hook, exc) from exc


async def run_hook(hook: Hook | None, conn: Any, close: Callable[[Any], Any] | None = None) -> None:
    """Run ``hook(conn)`` on the event loop, awaiting it if it is a coroutine function."""
    if hook is None:
        return
    try:
        result = hook(conn)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        _close(conn, close)
        raise _failed(hook, exc) from exc


async def _wait(awaitable: Any) -> Any:
    return await awaitable
