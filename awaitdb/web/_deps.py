"""Per-request database access: the ``Database`` and a ``Transaction`` for one request.

FastAPI (``Annotated`` aliases, one transaction per request)::

    async def create(order: Order, tx: awaitdb.web.Transaction) -> Record: ...
    async def list_(db: awaitdb.web.DB) -> list[Record]: ...

The transaction COMMITs when the endpoint returns and ROLLs BACK when it raises (an
``HTTPException`` included) or sets an error status (>= 400) on the injected ``Response``;
it ends before the response is sent, so a 2xx means the change is committed. It cannot see
a response the endpoint *returns*, nor a dependency declared before it that fails after its
``yield`` (both commit; see docs/services.md). Plain Starlette::

    async with awaitdb.web.transaction(request) as tx: ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from .._async.database import Database
from .._async.transaction import Transaction as _Transaction
from .._errors import Error
from ._runtime import runtime_of

__all__ = ["counted_db", "get_db", "request_transaction", "transaction"]


def _count(request: Any, exc: BaseException) -> None:
    if isinstance(exc, Error):
        runtime_of(request).errors[type(exc).__name__] += 1


def get_db(request: Any) -> Database:
    """The lifespan's ``Database`` (a Starlette ``Request`` in, for use in any endpoint)."""
    return runtime_of(request).db


@contextlib.asynccontextmanager
async def transaction(request: Any, **options: Any) -> AsyncIterator[_Transaction]:
    """``async with transaction(request) as tx``: the lifespan database's transaction; awaitdb
    errors are counted by class for ``metrics_app``."""
    db = runtime_of(request).db
    try:
        async with db.transaction(**options) as tx:
            yield tx
    except Exception as exc:
        _count(request, exc)
        raise


class _ErrorStatus(Exception):
    """Raised inside the transaction block to roll it back when the response is an error."""


@contextlib.asynccontextmanager
async def request_transaction(request: Any, response: Any) -> AsyncIterator[_Transaction]:
    """One transaction for a request, rolled back on an exception or on an error status
    (>= 400) set on ``response`` by the time the block ends."""
    try:
        async with transaction(request) as tx:
            yield tx
            if getattr(response, "status_code", None) is not None and response.status_code >= 400:
                raise _ErrorStatus
    except _ErrorStatus:
        pass


@contextlib.asynccontextmanager
async def counted_db(request: Any) -> AsyncIterator[Database]:
    """The ``Database`` for a block; awaitdb errors raised inside it are counted by class."""
    try:
        yield get_db(request)
    except Exception as exc:
        _count(request, exc)
        raise
