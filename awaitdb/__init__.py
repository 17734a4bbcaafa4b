"""awaitdb: a fast, correct async data layer for SQLite and PostgreSQL, with a generated sync twin.

db = await awaitdb.connect("sqlite:///app.db")
rows = await db.fetch_all("SELECT * FROM users WHERE team = :team", {"team": "core"})
"""

from __future__ import annotations

from ._async.database import Database
from ._async.rows import Rows
from ._async.transaction import PinnedConnection, Transaction
from ._bridge import SyncView
from ._connect import Connecting, connect, connect_sync
from ._current import current_transaction
from ._errors import (
    CannotConnect,
    CheckViolation,
    ConnectionLost,
    DatabaseBusy,
    DatabaseError,
    DataError,
    DeadlockDetected,
    Error,
    ForeignKeyViolation,
    IntegrityError,
    InterfaceError,
    MigrationError,
    NotNullViolation,
    OperationalError,
    Overloaded,
    PoolOverloaded,
    PoolTimeout,
    ProgrammingError,
    QueryTimeout,
    SerializationFailure,
    TransactionAborted,
    TransientError,
    UniqueViolation,
)
from ._monitor import LoopMonitor, LoopStats
from ._offload import Offloader, OffloadStats, off_loop, offload
from ._record import Record
from ._state import TransactionState
from ._stats import StatsSnapshot
from ._sync.database import SyncDatabase
from ._sync.rows import SyncRows
from ._sync.transaction import SyncPinnedConnection, SyncTransaction
from ._version import __version__

__all__ = [
    "CannotConnect",
    "CheckViolation",
    "Connecting",
    "ConnectionLost",
    "DataError",
    "Database",
    "DatabaseBusy",
    "DatabaseError",
    "DeadlockDetected",
    "Error",
    "ForeignKeyViolation",
    "IntegrityError",
    "InterfaceError",
    "LoopMonitor",
    "LoopStats",
    "MigrationError",
    "NotNullViolation",
    "OffloadStats",
    "Offloader",
    "OperationalError",
    "Overloaded",
    "PinnedConnection",
    "PoolOverloaded",
    "PoolTimeout",
    "ProgrammingError",
    "QueryTimeout",
    "Record",
    "Rows",
    "SerializationFailure",
    "StatsSnapshot",
    "SyncDatabase",
    "SyncPinnedConnection",
    "SyncRows",
    "SyncTransaction",
    "SyncView",
    "Transaction",
    "TransactionAborted",
    "TransactionState",
    "TransientError",
    "UniqueViolation",
    "__version__",
    "connect",
    "connect_sync",
    "current_transaction",
    "off_loop",
    "offload",
]
