"""Transactions, savepoints and pinned connections: scopes bound to one lent session.

A scope is entered with ``async with`` and bound to the current task through a context
variable, so ``db.execute`` inside the block, and tasks started inside it, use its connection.
A ``Transaction`` moves through the states drawn in ``awaitdb/_state.py``.

Nested blocks become savepoints. Of several open blocks on one connection, only the innermost
runs statements; a sibling task's statements wait for their block's turn, so statements are
serialized and never interleaved across savepoints.

Hooks (``on_commit``, ``on_rollback``) run before the block returns, in registration order, after
the outcome is final and the connection is back in the pool; an awaitable a hook returns is
awaited there too, so a hook that must not delay the caller schedules its work instead (the
events bus does). A savepoint that is released hands its hooks to the enclosing block; one that
rolls back drops its ``on_commit`` hooks and runs its ``on_rollback`` hooks at once. A hook that
raises is logged and does not change the outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._compat import ASYNC, AWaiter, isawaitable
from .._config import check_timeout
from .._current import CURRENT_TRANSACTION
from .._errors import ConnectionLost, InterfaceError, QueryTimeout, TransactionAborted
from .._ops import EXECUTE, ISOLATION_LEVELS, Column, Op
from .._sql import TXCONTROL, SqlInfo, analyze
from .._state import TransactionState
from .backend import Session
from .queries import Queries
from .rows import Rows

if TYPE_CHECKING:
    from .database import Database

__all__ = ["PinnedConnection", "Scope", "Transaction"]

logger = logging.getLogger("awaitdb")


class Binding:
    """One lent session and the stack of blocks open on it."""

    __slots__ = ("_turn", "deadline", "in_tx", "session", "stack")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.stack: list[Scope] = []
        self.in_tx = False  # a transaction we opened is expected to be open on the connection
        self.deadline: float | None = None
        self._turn: list[AWaiter[None]] = []

    async def wait_turn(self, scope: Scope) -> None:
        """Wait until ``scope`` is the innermost open block on this connection."""
        while self.stack and self.stack[-1] is not scope:
            if scope not in self.stack:
                raise InterfaceError("this block was closed while a nested block was open")
            waiter: AWaiter[None] = AWaiter()
            self._turn.append(waiter)
            await waiter.wait(None)

    def changed(self) -> None:
        waiters, self._turn = self._turn, []
        for waiter in waiters:
            waiter.set(None)


class Scope(Queries):
    """A block bound to one lent session: a pinned connection or a transaction."""

    _db: Database
    _binding: Binding | None
    _token: Any
    _owns_session: bool
    _allow_txcontrol = False

    async def _run(
        self, kind: Op, sql: str, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        return await self._db._run(kind, sql, params, arg, timeout, self)

    def iterate(
        self,
        sql: str,
        params: Any = None,
        *,
        batch_size: int = 500,
        timeout: float | None = None,
    ) -> Rows:
        return Rows(self._db, self, sql, params, batch_size, check_timeout(timeout))

    async def _session_for(self, info: SqlInfo | None, timeout: float | None) -> Session:
        """The session, once this block may use it; checks state, turn and deadline."""
        binding = self._binding
        if binding is None or not self._is_active():
            raise InterfaceError(
                f"this {self._what()} is not active (it was closed or never entered)"
            )
        if info is not None and info.kind == TXCONTROL and not self._allow_txcontrol:
            raise InterfaceError(
                "transaction control statements (BEGIN, COMMIT, SAVEPOINT...) are not allowed "
                "inside a transaction block: nest `db.transaction()` blocks instead"
            )
        top = binding.stack[-1]
        if top is not self and top is not self._db._scope.get():
            # Another block is innermost. If it is ours (we are inside it, calling an outer
            # block's methods), run now, inside it; otherwise wait for it to close.
            await binding.wait_turn(self)
        if binding.in_tx and not binding.session.in_transaction:
            raise TransactionAborted(
                "the database rolled this transaction back (a statement in it was cancelled, "
                "timed out or failed fatally); leave the block and retry it"
            )
        return binding.session

    async def _execute(
        self, kind: Op, info: SqlInfo, params: Any, arg: Column, timeout: float | None
    ) -> Any:
        session = await self._session_for(info, timeout)
        deadline = self._binding.deadline if self._binding is not None else None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueryTimeout("the transaction's timeout expired")
            timeout = remaining if timeout is None else min(timeout, remaining)
        return await session.run(kind, info, params, arg, timeout)

    def _is_active(self) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def _what(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class PinnedConnection(Scope):
    """``async with db.connection() as conn``: one connection for several statements, no BEGIN."""

    _allow_txcontrol = True

    def __init__(self, db: Database) -> None:
        self._db = db
        self._binding = None
        self._token = None
        self._owns_session = True
        self._active = False

    def _is_active(self) -> bool:
        return self._active

    def _what(self) -> str:
        return "pinned connection"

    async def __aenter__(self) -> PinnedConnection:
        if self._active or self._binding is not None:
            raise InterfaceError("a connection() block can be entered only once")
        db = self._db
        db._check_open()
        parent = db._scope.get()
        if parent is not None:
            # Already bound to a connection: reuse it, as nested blocks do.
            self._binding = parent._binding
            self._owns_session = False
        else:
            session = await db._backend.acquire(write=True, timeout=None)
            self._binding = Binding(session)
        assert self._binding is not None
        self._binding.stack.append(self)
        self._token = db._scope.set(self)
        self._active = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        binding = self._binding
        assert binding is not None
        self._active = False
        self._db._scope.reset(self._token)
        if self in binding.stack:
            binding.stack.remove(self)
        binding.changed()
        if self._owns_session:
            self._db._backend.release(binding.session)


class Transaction(Scope):
    """``async with db.transaction() as tx``: BEGIN ... COMMIT, or a SAVEPOINT when nested."""

    def __init__(
        self,
        db: Database,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> None:
        if isolation is not None:
            isolation = isolation.lower().replace(" ", "_")
            if isolation not in ISOLATION_LEVELS:
                levels = ", ".join(ISOLATION_LEVELS)
                raise InterfaceError(f"unknown isolation level {isolation!r}; use one of {levels}")
        if timeout is not None and timeout <= 0:
            raise InterfaceError("a transaction timeout must be a positive number of seconds")
        self._db = db
        self.isolation = isolation
        self.readonly = readonly
        self.timeout = timeout
        self.state = TransactionState.NEW
        self._binding = None
        self._token = None
        self._owns_session = False
        self._outermost = False
        self._savepoint: str | None = None
        self._callbacks: list[Callable[[], Any]] = []
        self._rollback_callbacks: list[Callable[[], Any]] = []
        self._parent: Scope | None = None
        self._current_token: Any = None

    def _is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def _what(self) -> str:
        return "transaction"

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` after the outermost COMMIT; dropped if this block rolls back."""
        if self.state is not TransactionState.ACTIVE:
            raise InterfaceError("on_commit() needs an active transaction")
        self._callbacks.append(callback)

    def on_rollback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback()`` if this block rolls back (a savepoint's own rollback included)."""
        if self.state is not TransactionState.ACTIVE:
            raise InterfaceError("on_rollback() needs an active transaction")
        self._rollback_callbacks.append(callback)

    async def __aenter__(self) -> Transaction:
        if self.state is not TransactionState.NEW:
            raise InterfaceError("a Transaction object can be entered only once")
        db = self._db
        db._check_open()
        parent = db._scope.get()
        self._parent = parent
        if parent is None or (parent._binding is not None and not parent._binding.in_tx):
            await self._begin(parent)
        else:
            await self._open_savepoint(parent)
        self._token = db._scope.set(self)
        self._current_token = CURRENT_TRANSACTION.set(self)
        self.state = TransactionState.ACTIVE
        return self

    async def _begin(self, parent: Scope | None) -> None:
        db = self._db
        if parent is None:
            session = await db._backend.acquire(write=not self.readonly, timeout=None)
            self._owns_session = True
            binding = Binding(session)
        else:
            assert parent._binding is not None
            binding = parent._binding
            await binding.wait_turn(parent)
        self._binding = binding
        self._outermost = True
        binding.stack.append(self)  # claim the turn before awaiting: siblings queue behind us
        begin = analyze(db._dialect.begin_sql(self.isolation, self.readonly))
        try:
            await self._run_begin(begin)
        except BaseException:
            self._unclaim()
            if self._owns_session:
                db._backend.release(binding.session, discard=True)
            self.state = TransactionState.FAILED
            raise
        binding.in_tx = True
        if self.timeout is not None:
            binding.deadline = time.monotonic() + self.timeout

    async def _run_begin(self, begin: SqlInfo) -> None:
        """BEGIN; a pooled connection that died while idle (a server restart) is replaced:
        a BEGIN that meets a dead connection changed nothing, so another one may try."""
        binding = self._binding
        assert binding is not None
        backend = self._db._backend
        attempts = 0  # counted only when one failed: pool_stats() is not free
        while True:
            try:
                await binding.session.run(EXECUTE, begin, None, None, self.timeout)
                return
            except ConnectionLost:
                if not attempts:
                    attempts = backend.pool_stats()["max_size"] + 1 if self._owns_session else 1
                attempts -= 1
                if attempts <= 0:
                    raise
            backend.release(binding.session, discard=True)
            self._owns_session = False  # until the next one is ours: never released twice
            binding.session = await backend.acquire(write=not self.readonly, timeout=None)
            self._owns_session = True

    async def _open_savepoint(self, parent: Scope) -> None:
        if self.isolation is not None:
            raise InterfaceError("isolation can only be set on the outermost transaction")
        binding = parent._binding
        assert binding is not None
        self._binding = binding
        await binding.wait_turn(parent)
        self._savepoint = f"awaitdb_sp{len(binding.stack)}"
        binding.stack.append(self)  # claim the turn before awaiting: siblings queue behind us
        try:
            await self._control(f"SAVEPOINT {self._savepoint}")
        except BaseException:
            self._unclaim()
            self.state = TransactionState.FAILED
            raise

    def _unclaim(self) -> None:
        binding = self._binding
        assert binding is not None
        if self in binding.stack:
            binding.stack.remove(self)
        binding.changed()

    async def _control(self, sql: str) -> None:
        binding = self._binding
        assert binding is not None
        await binding.session.run(EXECUTE, analyze(sql), None, None, None)

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        binding = self._binding
        assert binding is not None
        db = self._db
        db._scope.reset(self._token)
        CURRENT_TRANSACTION.reset(self._current_token)
        if binding.stack and binding.stack[-1] is not self:
            # A nested block opened by another task is still open: that block and this one
            # are rolled back together.
            exc_type = exc_type or InterfaceError
        ok = exc_type is None
        failed = False
        try:
            if self._outermost:
                await self._finish_outermost(ok)
            else:
                await self._finish_savepoint(ok)
        except Exception:
            # COMMIT or RELEASE was refused, or the timeout rolled the block back: it did not
            # commit. (A cancellation mid-COMMIT leaves the outcome unknown: no hook runs.)
            failed = True
            raise
        finally:
            if self in binding.stack:
                del binding.stack[binding.stack.index(self) :]
            binding.changed()
            if failed:
                await self._hooks(committed=False)
        if self._callbacks or self._rollback_callbacks:  # most blocks have none: no await
            await self._hooks(committed=self.state is TransactionState.COMMITTED)

    async def _hooks(self, *, committed: bool) -> None:
        """Run this block's hooks for its outcome (a released savepoint handed them up)."""
        if committed and not self._outermost:
            return
        callbacks = self._callbacks if committed else self._rollback_callbacks
        self._callbacks, self._rollback_callbacks = [], []
        if callbacks:
            await _run_hooks(callbacks, "on_commit" if committed else "on_rollback")

    async def _finish_outermost(self, ok: bool) -> None:
        binding = self._binding
        assert binding is not None
        backend = self._db._backend
        discard = False
        try:
            if ok:
                if binding.deadline is not None and time.monotonic() > binding.deadline:
                    self.state = TransactionState.FAILED
                    await self._rollback_quietly()
                    raise QueryTimeout(
                        f"the transaction ran past its {self.timeout:g}s timeout; rolled back"
                    )
                try:
                    await self._control("COMMIT")
                except BaseException:
                    self.state = TransactionState.FAILED
                    raise
                self.state = TransactionState.COMMITTED
            else:
                self.state = TransactionState.ROLLED_BACK
                discard = not await self._rollback_quietly()
        finally:
            binding.in_tx = False
            binding.deadline = None
            if self._owns_session:
                backend.release(binding.session, discard=discard)

    async def _rollback_quietly(self) -> bool:
        """ROLLBACK, keeping the error that made us roll back; False if the rollback failed."""
        binding = self._binding
        assert binding is not None
        if not binding.session.in_transaction:
            return True
        try:
            await self._control("ROLLBACK")
        except Exception:
            logger.debug("rollback failed; the connection will be discarded", exc_info=True)
            return False
        return True

    async def _finish_savepoint(self, ok: bool) -> None:
        binding = self._binding
        assert binding is not None and self._savepoint is not None
        if not binding.session.in_transaction:
            self.state = TransactionState.ROLLED_BACK
            return
        if ok:
            try:
                await self._control(f"RELEASE SAVEPOINT {self._savepoint}")
            except BaseException:
                self.state = TransactionState.FAILED
                raise
            self.state = TransactionState.COMMITTED
            parent = self._parent
            if isinstance(parent, Transaction):
                parent._callbacks.extend(self._callbacks)
                parent._rollback_callbacks.extend(self._rollback_callbacks)
            self._callbacks, self._rollback_callbacks = [], []
        else:
            self.state = TransactionState.ROLLED_BACK
            await self._control(f"ROLLBACK TO SAVEPOINT {self._savepoint}")
            await self._control(f"RELEASE SAVEPOINT {self._savepoint}")

    def __repr__(self) -> str:
        kind = "savepoint" if self._savepoint else "transaction"
        return f"<{type(self).__name__} {kind} {self.state.value}>"


def innermost_transaction(scope: Scope | None) -> Transaction | None:
    """The innermost transaction block ``scope`` runs in, or None (a plain pinned connection)."""
    if scope is None or isinstance(scope, Transaction):
        return scope
    binding = scope._binding
    if binding is None or not binding.in_tx or scope not in binding.stack:
        return None
    for block in reversed(binding.stack[: binding.stack.index(scope)]):
        if isinstance(block, Transaction) and block._is_active():
            return block
    return None


async def _run_hooks(callbacks: list[Callable[[], Any]], what: str) -> None:
    """Run transaction hooks in order; a failure is logged and the next one still runs.

    Cancelled while awaiting one (the transaction is already over): the hooks after it still
    run, an async one in a task of its own; then the cancellation is raised.
    """
    interrupted: BaseException | None = None
    for callback in callbacks:
        try:
            if ASYNC:
                result = callback()
                if isawaitable(result):
                    if interrupted is None:
                        await result
                    else:
                        _hand_off(result, what, callback)
            else:
                callback()
        except Exception:
            logger.exception("%s callback %r failed", what, callback)
        except BaseException as exc:  # noqa: BLE001 - cancelled: the later hooks still run
            if interrupted is None:
                interrupted = exc
    if interrupted is not None:
        raise interrupted


if ASYNC:
    import asyncio

    _hook_tasks: set[asyncio.Task[Any]] = set()

    def _hand_off(awaitable: Any, what: str, callback: Callable[[], Any]) -> None:
        async def run() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("%s callback %r failed", what, callback)

        task = asyncio.get_running_loop().create_task(run(), name=f"awaitdb-{what}")
        _hook_tasks.add(task)
        task.add_done_callback(_hook_tasks.discard)
