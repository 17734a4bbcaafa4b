"""Operation codes passed across the backend seam: what to do with a statement's result.

``Op`` is an enum whose order means nothing: code compares members by identity (``is`` or
``==``, as cheap as an int compare) and asks a member what it is (``op.returns_rows``, a plain
attribute) instead of comparing ranges. The names below are the members, for short imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Final, TypeAlias

__all__ = [
    "EXECUTE",
    "EXECUTE_MANY",
    "FETCH_ALL",
    "FETCH_ONE",
    "FETCH_VAL",
    "ISOLATION_LEVELS",
    "Column",
    "Op",
    "Params",
]


class Op(Enum):
    """One statement's operation, and the shape of what it returns."""

    EXECUTE = "execute"  # -> affected row count
    EXECUTE_MANY = "execute_many"  # params is a sequence of mappings -> total affected row count
    FETCH_ONE = "fetch_one"  # -> Record | None
    FETCH_ALL = "fetch_all"  # -> list[Record]
    FETCH_VAL = "fetch_val"  # arg is the column (index or name) -> value | None

    #: The result is built from rows (a read-only connection may answer it; the statement
    #: itself may still write). Set once below: an attribute read, no property call.
    returns_rows: bool


for _op in Op:
    _op.returns_rows = _op in {Op.FETCH_ONE, Op.FETCH_ALL, Op.FETCH_VAL}
del _op

EXECUTE: Final = Op.EXECUTE
EXECUTE_MANY: Final = Op.EXECUTE_MANY
FETCH_ONE: Final = Op.FETCH_ONE
FETCH_ALL: Final = Op.FETCH_ALL
FETCH_VAL: Final = Op.FETCH_VAL

#: A statement's parameters as they cross the seam: a mapping of ``:name`` values, ``None``,
#: values by position (lists expanded by ``_sql.bind_lists``) or, for ``EXECUTE_MANY``, a
#: sequence of mappings.
Params: TypeAlias = Mapping[str, Any] | Sequence[Any] | None
#: ``FETCH_VAL``'s column: an index or a name (``None`` for every other operation).
Column: TypeAlias = int | str | None

ISOLATION_LEVELS: Final = ("read_committed", "repeatable_read", "serializable")
