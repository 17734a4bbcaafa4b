"""Which reads may run on the event loop's thread, decided by what they return and cost.

A statement (one ``SqlInfo``) moves between the loop and the reader threads::

    on the loop ──(aborted: 0.5 ms of VM steps, a value over 64 KiB,  ──► on a thread
                   SQL over 16 KiB, more than 100 parameters)
    on the loop ──(a run over 0.5 ms of wall time that the loop thread's ──► on a thread
                   CPU time confirms: work SQLite cannot interrupt, such
                   as count(*) of a big table; a preempted run does not count)
    on a thread ──(8 runs in a row under 0.25 ms of the thread's CPU)  ──► on the loop

The limits are set on the inline connection itself (``sqlite3_limit``), so a big value or a
wide statement is refused by SQLite before it is copied or prepared, not measured after. No
decision is for good: a statement sent to the threads comes back once its runs are cheap.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from .._sql import SqlInfo

__all__ = ["InlinePolicy", "limit_inline", "too_big_inline"]

INLINE_MAX_VALUE: Final = 64 * 1024  # bytes of one string or blob read on the loop
INLINE_MAX_SQL: Final = 16 * 1024  # characters of SQL prepared on the loop
INLINE_MAX_PARAMS: Final = 100  # parameters bound on the loop
SLOW_CPU_S: Final = 0.0005  # loop-thread CPU time in the iteration that confirms a slow run
CHEAP_RUNS: Final = 8  # consecutive cheap threaded runs that bring it back
CHEAP_CPU_S: Final = 0.00025  # a threaded run under this much thread CPU time is cheap
_MEMORY: Final = 4096  # statements followed at once (the counters are forgotten beyond)


def limit_inline(conn: sqlite3.Connection) -> None:
    """Make SQLite refuse, on the inline connection, the reads too big for the loop."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, INLINE_MAX_VALUE)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, INLINE_MAX_SQL)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, INLINE_MAX_PARAMS)


def too_big_inline(exc: BaseException) -> bool:
    """The inline connection's limits refused the statement (it may be fine on a thread)."""
    return isinstance(exc, sqlite3.DataError) or "too many SQL variables" in str(exc)


class InlinePolicy:
    """Moves statements off the loop and counts their cheap threaded runs; flips ``inline_ok``."""

    __slots__ = ("cheap",)

    def __init__(self) -> None:
        self.cheap: dict[SqlInfo, int] = {}

    def to_threads(self, info: SqlInfo) -> None:
        info.inline_ok = False
        self.cheap.pop(info, None)

    def slow_run(self, info: SqlInfo, cpu_s: float) -> None:
        """An inline run took over 0.5 ms of wall time; ``cpu_s``: the loop thread's CPU time
        in this iteration, which tells real work from a preempted thread."""
        if cpu_s >= SLOW_CPU_S:
            self.to_threads(info)

    def threaded_run(self, info: SqlInfo, cpu_s: float) -> None:
        """A reader thread ran a statement kept off the loop, using ``cpu_s`` of its CPU."""
        if cpu_s >= CHEAP_CPU_S:
            self.cheap.pop(info, None)
            return
        runs = self.cheap.get(info, 0) + 1
        if runs >= CHEAP_RUNS:
            self.cheap.pop(info, None)
            info.inline_ok = True
        else:
            _count(self.cheap, info, runs)


def _count(counts: dict[SqlInfo, int], info: SqlInfo, runs: int) -> None:
    if len(counts) >= _MEMORY:
        counts.clear()
    counts[info] = runs
