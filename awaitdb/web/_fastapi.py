"""FastAPI ``Annotated`` aliases: ``Transaction`` (one per request) and ``DB``.

``Transaction`` uses ``Depends(..., scope="function")``: it ends when the endpoint returns,
before the response is sent, so a client that sees 2xx knows the COMMIT happened (and a failed
COMMIT becomes a 500, not a 2xx followed by a silent loss). With a FastAPI too old for
dependency scopes the transaction still commits or rolls back the same way, after the response.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Response

from .._async.database import Database
from .._async.transaction import Transaction as _Transaction
from ._deps import counted_db, request_transaction

__all__ = ["DB", "Transaction", "db_dependency", "transaction_dependency"]


async def transaction_dependency(
    request: Request, response: Response
) -> AsyncIterator[_Transaction]:
    """One transaction per request: COMMIT on success, ROLLBACK on an error or status >= 400."""
    async with request_transaction(request, response) as tx:
        yield tx


async def db_dependency(request: Request) -> AsyncIterator[Database]:
    """The lifespan's ``Database``; awaitdb errors raised by the endpoint are counted."""
    async with counted_db(request) as db:
        yield db


try:
    _transaction = Depends(transaction_dependency, scope="function")
    _db = Depends(db_dependency, scope="function")
except TypeError:  # pragma: no cover - FastAPI before dependency scopes: ends after the response
    _transaction = Depends(transaction_dependency)
    _db = Depends(db_dependency)

Transaction = Annotated[_Transaction, _transaction]
DB = Annotated[Database, _db]
