"""The innermost transaction block of the current task, whatever its database or face.

Each database binds its own blocks through a context variable of its own; this one variable
tracks the innermost ``Transaction`` (or ``SyncTransaction``) of any database, so that code with
no database at hand (the events bus) finds the transaction it runs in. Set on block entry,
reset on exit (savepoints included); tasks started inside a block inherit it.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._async.transaction import Transaction
    from ._sync.transaction import SyncTransaction

__all__ = ["CURRENT_TRANSACTION", "current_transaction"]

CURRENT_TRANSACTION: ContextVar[Any] = ContextVar("awaitdb-current-transaction", default=None)


def current_transaction() -> Transaction | SyncTransaction | None:
    """The innermost transaction block the current task runs in, of any database, or None."""
    tx: Transaction | SyncTransaction | None = CURRENT_TRANSACTION.get()
    return tx
