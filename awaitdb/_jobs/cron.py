"""Cron schedules for periodic tasks, parsed and evaluated by ``cronsim`` (the ``jobs`` extra).

Schedules are evaluated in UTC. A slot is the Unix time of one scheduled instant; each slot of
each periodic task is enqueued at most once across all workers (see ``Worker``).
"""

from __future__ import annotations

import datetime as dt

from .._errors import InterfaceError

__all__ = ["CronSchedule"]


def _cronsim() -> type:
    try:
        from cronsim import CronSim
    except ImportError:  # pragma: no cover - the jobs extra is missing
        raise InterfaceError(
            "periodic tasks need the 'cronsim' package: pip install 'awaitdb[jobs]'"
        ) from None
    cls: type = CronSim
    return cls


class CronSchedule:
    """A validated cron expression; ``next_slot(after)`` is the next instant after ``after``."""

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise InterfaceError(f"a cron expression must be a non-empty string: {expression!r}")
        cronsim = _cronsim()
        from cronsim import CronSimError

        self.expression = expression.strip()
        try:
            next(cronsim(self.expression, dt.datetime.now(dt.UTC)))
        except (CronSimError, StopIteration, ValueError) as exc:
            raise InterfaceError(f"bad cron expression {expression!r}: {exc}") from None

    def next_slot(self, after: float) -> float:
        """The first scheduled instant strictly after ``after`` (Unix seconds)."""
        start = dt.datetime.fromtimestamp(after, dt.UTC)
        slot: dt.datetime = next(_cronsim()(self.expression, start))
        return slot.timestamp()

    def __repr__(self) -> str:
        return f"CronSchedule({self.expression!r})"
