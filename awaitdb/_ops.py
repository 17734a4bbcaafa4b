"""Operation codes passed across the backend seam: what to do with a statement's result."""

from __future__ import annotations

from typing import Final

__all__ = ["EXECUTE", "EXECUTE_MANY", "FETCH_ONE", "FETCH_ALL", "FETCH_VAL", "ISOLATION_LEVELS"]

EXECUTE: Final = 0  # -> affected row count
EXECUTE_MANY: Final = 1  # params is a sequence of mappings -> total affected row count
FETCH_ONE: Final = 2  # -> Record | None
FETCH_ALL: Final = 3  # -> list[Record]
FETCH_VAL: Final = 4  # arg is the column (index or name) -> value | None

ISOLATION_LEVELS: Final = ("read_committed", "repeatable_read", "serializable")
