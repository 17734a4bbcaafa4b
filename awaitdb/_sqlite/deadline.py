"""SQLite's progress handler: a statement's deadline, and Ctrl-C delivered mid-statement.

Python runs signal handlers (``KeyboardInterrupt`` for Ctrl-C) at the first check point of the
next Python frame; while sqlite3 steps a statement, only a progress handler gives it one. So
every sync connection, and the async face's inline reader on the loop thread, keeps a handler
(every ``PROGRESS_OPS`` VM steps): it stops a statement past its deadline, and it lets Ctrl-C
stop a statement that has none.

sqlite3 swallows an exception raised in the handler and reports ``OperationalError
('interrupted')``, which would read as a timeout. A plain function cannot catch it: the check
fires at the function's first instruction, before any ``try``. A generator resumed by
``__next__`` checks after its ``yield``, inside the ``try`` below, so the exception is caught,
kept in ``pending``, the statement is aborted, and ``settle`` re-raises it untouched.

The inline connection's handler also checks the CPU time the loop thread spent in the statement
(``cpu_limit``): what a read costs, which a preempted thread or a neighbour holding the GIL does
not inflate.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator

__all__ = ["PROGRESS_OPS", "Watch"]

PROGRESS_OPS = 1000  # VM steps between two calls of the handler (a few microseconds)


class Watch:
    """Progress-handler state of one connection: its deadline and an exception raised in it."""

    __slots__ = ("by_cpu", "cpu_deadline", "cpu_limit", "deadline", "pending")

    def __init__(self, *, cpu_limit: float | None = None) -> None:
        self.deadline = math.inf
        # With ``cpu_limit``: set ``cpu_deadline`` to 0 before each statement; its first tick
        # sets it to ``time.thread_time() + cpu_limit`` and later ticks stop the statement past
        # it (the CPU of the ~1,000 VM steps before the first tick is not counted).
        self.by_cpu = cpu_limit is not None
        self.cpu_limit = math.inf if cpu_limit is None else cpu_limit
        self.cpu_deadline = math.inf
        self.pending: BaseException | None = None

    def arm(self, conn: sqlite3.Connection) -> None:
        """Install a fresh handler on ``conn`` (the generator does not reference ``conn``)."""
        ticks = self._ticks()
        next(ticks)  # run to the first ``yield``: every later call resumes inside the ``try``
        conn.set_progress_handler(ticks.__next__, PROGRESS_OPS)

    def _ticks(self) -> Iterator[bool]:
        try:
            if self.by_cpu:
                while True:
                    cpu = time.thread_time()
                    if not self.cpu_deadline:  # the statement's first tick: start its clock
                        self.cpu_deadline = cpu + self.cpu_limit
                    yield time.perf_counter() > self.deadline or cpu > self.cpu_deadline
            while True:
                yield time.perf_counter() > self.deadline
        except GeneratorExit:  # the handler replaced and collected
            return
        except BaseException as exc:  # noqa: BLE001 - a signal handler's KeyboardInterrupt...
            self.pending = exc
        while True:
            yield True  # abort until ``settle`` raises ``pending`` and installs a fresh handler

    def settle(self, conn: sqlite3.Connection) -> None:
        """After a statement: clear its deadline; raise what a signal handler raised, as it was."""
        self.deadline = self.cpu_deadline = math.inf
        exc = self.pending
        if exc is not None:
            self.pending = None
            self.arm(conn)
            exc.__suppress_context__ = True  # not "during handling of OperationalError"
            raise exc
