"""One exception tree for every backend and both faces.

Names follow DB-API 2.0 under a single root. Backends translate their driver's exceptions into
this tree where they plug in, chain the original as ``__cause__`` and keep the SQLSTATE and the
constraint name when the database reports them::

    Error
    ├── InterfaceError            misuse: closed database, bad URL, bad parameters, unbindable value
    ├── MigrationError            a migration file, the ledger, a guard or a backup said no
    └── DatabaseError
        ├── OperationalError
        │   ├── CannotConnect
        │   ├── ConnectionLost
        │   ├── PoolTimeout        no connection within acquire_timeout (message carries pool stats)
        │   ├── PoolOverloaded     more than max_waiting waiters
        │   ├── Overloaded         the off-loop thread pool's queue is full (awaitdb.offload)
        │   ├── QueryTimeout
        │   ├── TransactionAborted the database rolled the transaction back under its owner
        │   └── TransientError     safe to retry the whole transaction
        │       ├── SerializationFailure
        │       ├── DeadlockDetected
        │       └── DatabaseBusy
        ├── IntegrityError
        │   ├── UniqueViolation
        │   ├── ForeignKeyViolation
        │   ├── NotNullViolation
        │   └── CheckViolation
        ├── ProgrammingError       syntax errors, unknown tables or columns
        └── DataError              value out of range, invalid text representation
"""

from __future__ import annotations

__all__ = [
    "CannotConnect",
    "CheckViolation",
    "ConnectionLost",
    "DataError",
    "DatabaseBusy",
    "DatabaseError",
    "DeadlockDetected",
    "Error",
    "ForeignKeyViolation",
    "IntegrityError",
    "InterfaceError",
    "MigrationError",
    "NotNullViolation",
    "OperationalError",
    "Overloaded",
    "PoolOverloaded",
    "PoolTimeout",
    "ProgrammingError",
    "QueryTimeout",
    "SerializationFailure",
    "TransactionAborted",
    "TransientError",
    "UniqueViolation",
]


class Error(Exception):
    """Root of every exception awaitdb raises."""

    sqlstate: str | None
    constraint: str | None

    def __init__(
        self, message: str = "", *, sqlstate: str | None = None, constraint: str | None = None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint = constraint


class InterfaceError(Error):
    """The library was misused: closed database, bad URL or option, bad parameters."""


class MigrationError(Error):
    """A migration could not be planned, applied, verified or restored; the message says why
    and, where there is one, the file and line."""


class DatabaseError(Error):
    """The database reported an error."""


class OperationalError(DatabaseError):
    """The database or its connection failed for reasons outside the statement itself."""


class CannotConnect(OperationalError):
    """A new connection could not be opened."""


class ConnectionLost(OperationalError):
    """The connection died while a statement was in flight; the outcome is unknown."""


class PoolTimeout(OperationalError):
    """No connection became free within ``acquire_timeout``."""


class PoolOverloaded(OperationalError):
    """More than ``max_waiting`` callers were already waiting for a connection."""


class Overloaded(OperationalError):
    """More than ``max_queue`` calls were already waiting for an off-loop thread."""


class QueryTimeout(OperationalError):
    """A statement ran past its ``timeout`` and was cancelled on the database."""


class TransactionAborted(OperationalError):
    """The database rolled the transaction back (for example after an interrupted statement)."""


class TransientError(OperationalError):
    """Retrying the whole transaction may succeed; ``run_in_transaction`` retries these."""


class SerializationFailure(TransientError):
    """SQLSTATE 40001: the transaction conflicted with a concurrent one."""


class DeadlockDetected(TransientError):
    """SQLSTATE 40P01: the transaction was chosen as a deadlock victim."""


class DatabaseBusy(TransientError):
    """SQLite: the file stayed locked by another connection past ``busy_timeout``."""


class IntegrityError(DatabaseError):
    """A constraint was violated."""


class UniqueViolation(IntegrityError):
    """SQLSTATE 23505: a unique or primary-key constraint was violated."""


class ForeignKeyViolation(IntegrityError):
    """SQLSTATE 23503: a foreign-key constraint was violated."""


class NotNullViolation(IntegrityError):
    """SQLSTATE 23502: NULL was written to a NOT NULL column."""


class CheckViolation(IntegrityError):
    """SQLSTATE 23514: a CHECK constraint was violated."""


class ProgrammingError(DatabaseError):
    """The statement is wrong: syntax error, unknown table or column."""


class DataError(DatabaseError):
    """A value is out of range or has an invalid representation."""


# SQLSTATE class/code -> exception. SQLSTATE (SQL standard, ISO/IEC 9075) is the project's
# error key on every backend, not one database's rule: a backend whose driver reports none
# maps its errors onto these codes (SQLite: ``_sqlite/common.translate``).
SQLSTATE_ERRORS: dict[str, type[DatabaseError]] = {
    "23505": UniqueViolation,
    "23503": ForeignKeyViolation,
    "23502": NotNullViolation,
    "23514": CheckViolation,
    "40001": SerializationFailure,
    "40P01": DeadlockDetected,
    "57014": QueryTimeout,
    "57P01": ConnectionLost,  # admin_shutdown: pg_terminate_backend, server stopping
    "57P02": ConnectionLost,  # crash_shutdown
    "57P03": CannotConnect,  # cannot_connect_now: server starting up
    "28000": CannotConnect,  # invalid_authorization_specification
    "28P01": CannotConnect,  # invalid_password
    "3D000": CannotConnect,  # invalid_catalog_name: no such database
    "25006": OperationalError,  # read_only_sql_transaction
}

SQLSTATE_CLASSES: dict[str, type[DatabaseError]] = {
    "08": ConnectionLost,
    "22": DataError,
    "23": IntegrityError,
    "25": OperationalError,
    "40": TransientError,
    "42": ProgrammingError,
    "53": OperationalError,
    "54": OperationalError,
    "55": OperationalError,
    "57": OperationalError,
    "58": OperationalError,
}


def error_for_sqlstate(sqlstate: str | None) -> type[DatabaseError]:
    """The most specific class for a SQLSTATE; ``DatabaseError`` when it is unknown."""
    if not sqlstate:
        return DatabaseError
    exact = SQLSTATE_ERRORS.get(sqlstate)
    if exact is not None:
        return exact
    return SQLSTATE_CLASSES.get(sqlstate[:2], DatabaseError)
