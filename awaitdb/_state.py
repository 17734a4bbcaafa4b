"""``TransactionState``: shared by both faces so ``tx.state`` compares equal everywhere.

NEW ──enter──► ACTIVE ──exit ok──► COMMITTED   (outermost: COMMIT; nested: RELEASE SAVEPOINT)
                 │
                 ├──exit with error──► ROLLED_BACK
                 └──COMMIT/RELEASE failed──► FAILED
"""

from __future__ import annotations

import enum

__all__ = ["TransactionState"]


class TransactionState(enum.Enum):
    NEW = "new"
    ACTIVE = "active"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
