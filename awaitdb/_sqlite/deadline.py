"""A progress handler that stops a statement past its deadline and keeps Ctrl-C a Ctrl-C.

Python runs signal handlers (``KeyboardInterrupt`` for Ctrl-C) at the first check point of the
next Python frame, and while sqlite3 steps a statement that frame is the progress handler's.
sqlite3 swallows an exception raised there and reports ``OperationalError('interrupted')``,
which would read as a timeout. A plain function cannot catch it: the check fires at the
function's first instruction, before any ``try``. A generator resumed by ``__next__`` checks
after its ``yield``, inside the ``try`` below, so the exception is caught, kept in ``pending``,
the statement is aborted, and the caller re-raises it untouched (``raise_pending``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

__all__ = ["Watch"]


class Watch:
    """Progress-handler state of one connection: its deadline and an exception raised in it."""

    __slots__ = ("deadline", "pending")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.pending: BaseException | None = None

    def arm(self, deadline: float) -> Callable[[], bool]:
        """A fresh handler (for ``set_progress_handler``) that aborts past ``deadline``."""
        self.deadline = deadline
        self.pending = None
        ticks = self._ticks()
        next(ticks)  # run to the first ``yield``: every later call resumes inside the ``try``
        return ticks.__next__

    def _ticks(self) -> Iterator[bool]:
        try:
            while True:
                yield time.perf_counter() > self.deadline
        except GeneratorExit:  # the handler replaced and collected
            return
        except BaseException as exc:  # noqa: BLE001 - a signal handler's KeyboardInterrupt...
            self.pending = exc
        while True:
            yield True  # abort the statement; the caller raises ``pending``

    def raise_pending(self) -> None:
        """Raise the exception a signal handler raised in the handler, if any, as it was."""
        exc = self.pending
        if exc is not None:
            self.pending = None
            exc.__suppress_context__ = True  # not "during handling of OperationalError"
            raise exc
