"""What one async SQLite backend learns about its statements: which reads may run on the loop.

The analysis of a SQL text (``SqlInfo``) is shared by every database in the process and never
changes; what is learned at run time lives here, in the ``InlinePolicy`` of one backend, and is
forgotten again. A statement moves between these states (absent from ``learned``: inline)::

    inline ──(a run over 0.5 ms of wall time: work SQLite could not ──► suspect
      ▲        interrupt, or a preempted thread? the next run tells)
      │   suspect ──(its next inline run, measured alone, used under 0.5 ms of CPU)──► inline
      │   suspect ──(... used 0.5 ms of CPU or more: work SQLite cannot interrupt)──► off
      │   inline ──(aborted: 0.5 ms of the loop thread's CPU in VM steps; a value over
      │             64 KiB, SQL over 16 KiB, more than 100 parameters)──► off
      └── off ──(N threaded runs in a row under 0.25 ms of the thread's CPU; N = 8 the first
                 time, doubled each time the statement is sent off again, at most 512)
    inline ──(a reader refused it: a WITH ... INSERT)──► writes (the writer runs it)

Only CPU time and SQLite's own limits decide; wall time merely raises a suspicion, since a
busy neighbour thread or a preempted loop inflates it without the statement costing more (an
inline run past the caller's own timeout goes to a thread, and teaches nothing). The limits are
set on the inline connection itself (``sqlite3_limit``), so a big value or a wide statement is
refused by SQLite before it is copied or prepared.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from .._sql import SqlInfo

__all__ = ["SUSPECT", "WRITES", "InlinePolicy", "Off", "limit_inline", "too_big_inline"]

INLINE_MAX_VALUE: Final = 64 * 1024  # bytes of one string or blob read on the loop
INLINE_MAX_SQL: Final = 16 * 1024  # characters of SQL prepared on the loop
INLINE_MAX_PARAMS: Final = 100  # parameters bound on the loop
SLOW_CPU_S: Final = 0.0005  # loop-thread CPU time of one run that sends a statement off
CHEAP_RUNS: Final = 8  # consecutive cheap threaded runs that bring it back, the first time
MAX_CHEAP_RUNS: Final = 512  # the back-off's ceiling
CHEAP_CPU_S: Final = 0.00025  # a threaded run under this much thread CPU time is cheap
_MEMORY: Final = 4096  # statements followed at once (all is forgotten beyond)


class Off:
    """A statement kept off the loop: its cheap threaded runs so far and how many it needs."""

    __slots__ = ("cheap", "needed")

    def __init__(self, needed: int) -> None:
        self.cheap = 0
        self.needed = needed


SUSPECT: Final = object()  # inline, but its next run is measured on its own
WRITES: Final = object()  # a reader refused it: the writer runs it


def limit_inline(conn: sqlite3.Connection) -> None:
    """Make SQLite refuse, on the inline connection, the reads too big for the loop."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, INLINE_MAX_VALUE)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, INLINE_MAX_SQL)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, INLINE_MAX_PARAMS)


def too_big_inline(exc: BaseException) -> bool:
    """The inline connection's limits refused the statement (it may be fine on a thread)."""
    return isinstance(exc, sqlite3.DataError) or "too many SQL variables" in str(exc)


class InlinePolicy:
    """One backend's learned state per statement (``learned``), and the back-off that ends it."""

    __slots__ = ("learned", "strikes")

    def __init__(self) -> None:
        self.learned: dict[SqlInfo, object] = {}  # absent: inline; SUSPECT, Off or WRITES
        self.strikes: dict[SqlInfo, int] = {}  # times each statement was sent off the loop

    def _set(self, info: SqlInfo, state: object) -> None:
        if len(self.learned) >= _MEMORY:
            self.learned.clear()
            self.strikes.clear()
        self.learned[info] = state

    def to_threads(self, info: SqlInfo) -> None:
        """A run proved too costly or too big for the loop: off it, with a longer back-off."""
        strikes = self.strikes.get(info, 0)
        self.strikes[info] = strikes + 1
        self._set(info, Off(min(CHEAP_RUNS << strikes, MAX_CHEAP_RUNS)))

    def suspect(self, info: SqlInfo) -> None:
        """A run was long in wall time while the loop thread was busy: measure the next one."""
        if self.learned.get(info) is None:
            self._set(info, SUSPECT)

    def measured(self, info: SqlInfo, cpu_s: float) -> None:
        """A suspect's inline run used ``cpu_s`` of the loop thread's CPU on its own."""
        if cpu_s >= SLOW_CPU_S:
            self.to_threads(info)
        elif self.learned.get(info) is SUSPECT:
            del self.learned[info]

    def writes(self, info: SqlInfo) -> None:
        """A reader refused the statement (it writes): the writer runs it from now on."""
        self._set(info, WRITES)

    def threaded_run(self, info: SqlInfo, cpu_s: float) -> None:
        """A reader thread ran a statement kept off the loop, using ``cpu_s`` of its CPU."""
        off = self.learned.get(info)
        if not isinstance(off, Off):
            return
        if cpu_s >= CHEAP_CPU_S:
            off.cheap = 0
            return
        off.cheap += 1
        if off.cheap >= off.needed:
            del self.learned[info]  # back on the loop; ``strikes`` lengthens the next back-off
