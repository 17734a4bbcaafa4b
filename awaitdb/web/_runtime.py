"""``lifespan(...)``: open the database, start workers, consumers and the loop monitor; stop
them in reverse order within a grace time.

Start-up and shutdown order::

    start:  database (migrated first when asked) ─> loop monitor ─> workers ─> consumers
    stop:   consumers ─> workers ─> loop monitor ─> database        (all within ``grace``)

A worker or consumer is duck-typed: anything with ``__aenter__``/``__aexit__`` or with
``start()``/``stop()`` (sync or async), a running ``asyncio.Task`` (cancelled on stop), or a
callable that receives the opened ``Database`` and returns one of those, such as a class
(workers usually need the database the lifespan opens). An ``awaitdb.jobs.Queue`` is wrapped
in an ``awaitdb.jobs.Worker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from .._async.database import Database
from .._connect import connect
from .._errors import InterfaceError
from .._monitor import LoopMonitor

__all__ = ["Lifespan", "Runtime", "Service", "lifespan", "runtime_of"]

logger = logging.getLogger("awaitdb")


class Service:
    """One started worker or consumer: how to stop it and whether it is still alive."""

    def __init__(
        self,
        kind: str,
        obj: Any,
        stop: Callable[[], Any],
        task: asyncio.Future[Any] | None = None,
    ) -> None:
        self.kind = kind
        self.obj = obj
        self.name = str(getattr(obj, "name", None) or type(obj).__name__)
        self._stop = stop
        # The task the service runs in, kept here: a crashed ``awaitdb.jobs.Worker`` clears its
        # own ``_serving`` reference, so only this one still shows that it ended.
        self._task = task
        if task is not None:
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "%s %s stopped with an error", self.kind, self.name, exc_info=task.exception()
            )

    def alive(self) -> bool:
        """False when the object reports it died: an ``alive`` or ``is_alive()`` that says so,
        a boolean ``running`` that is False, or a serving task (``_serving``) that ended."""
        if self._task is not None and self._task.done():
            return False
        for attr in ("alive", "is_alive", "running"):
            value = getattr(self.obj, attr, None)
            if callable(value):
                value = value()
            if isinstance(value, bool):
                return value
        serving = getattr(self.obj, "_serving", None)  # awaitdb.jobs.Worker's task
        if isinstance(serving, asyncio.Task):
            return not serving.done()
        return True

    async def stop(self) -> None:
        result = self._stop()
        if inspect.isawaitable(result):
            await result


async def _start(kind: str, item: Any, db: Database) -> Service:
    obj = _wrap_queue(item)
    if isinstance(obj, type) or (
        not (hasattr(obj, "__aenter__") or hasattr(obj, "start")) and callable(obj)
    ):
        obj = obj(db)
        if inspect.isawaitable(obj) and not isinstance(obj, asyncio.Future):
            obj = await obj  # an async factory (a running task is kept as it is)
        obj = _wrap_queue(obj)
    if isinstance(obj, asyncio.Future):  # a running task, e.g. Stream.deliver_to(bus)
        task = obj

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return Service(kind, _TaskHandle(task), cancel, task)
    if hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__"):
        await obj.__aenter__()
        serving = getattr(obj, "_serving", None)  # awaitdb.jobs.Worker's task
        return Service(
            kind,
            obj,
            lambda: obj.__aexit__(None, None, None),
            serving if isinstance(serving, asyncio.Task) else None,
        )
    start, stop = getattr(obj, "start", None), getattr(obj, "stop", None)
    if callable(start) and callable(stop):
        result = start()
        if inspect.isawaitable(result):
            await result
        return Service(kind, obj, stop)
    raise InterfaceError(
        f"cannot start {kind} {obj!r}: it needs __aenter__/__aexit__ or start()/stop(), "
        "or must be a callable taking the Database and returning such an object"
    )


class _TaskHandle:
    """A started task seen as a service: alive while the task runs."""

    def __init__(self, task: asyncio.Future[Any]) -> None:
        self.task = task
        self.name = task.get_name() if isinstance(task, asyncio.Task) else "task"

    def alive(self) -> bool:
        return not self.task.done()


def _wrap_queue(obj: Any) -> Any:
    try:
        from .. import jobs
    except ImportError:
        return obj
    queue_type = getattr(jobs, "Queue", None)
    worker_type = getattr(jobs, "Worker", None)
    if queue_type is not None and worker_type is not None and isinstance(obj, queue_type):
        return worker_type(obj)
    return obj


class Runtime:
    """What a running lifespan holds: the database, the monitor, the started services, and the
    error counts by class that the request dependencies saw. Read it with ``runtime_of``."""

    def __init__(self, db: Database, owns_db: bool, migrations: str | None) -> None:
        self.db = db
        self.owns_db = owns_db
        self.migrations = migrations
        self.monitor: LoopMonitor | None = None
        self.services: list[Service] = []
        self.errors: Counter[str] = Counter()
        self.started_at = time.time()
        self.metrics_state: dict[str, Any] = {}  # cumulative histograms, kept across scrapes
        #: Stop calls still running after the grace time ran out (the shutdown left them).
        self.abandoned: set[asyncio.Task[None]] = set()

    def dead_services(self) -> list[Service]:
        return [s for s in self.services if not s.alive()]

    def _left(self, service: Service, task: asyncio.Task[None]) -> None:
        self.abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "%s %s failed to stop", service.kind, service.name, exc_info=task.exception()
            )

    async def stop(self, grace: float) -> None:
        """Stop consumers, workers, the monitor, then close the database, within ``grace``.

        A service still stopping when the grace time runs out (one that ignores cancellation)
        is cancelled, logged and left behind in ``abandoned``: the database still closes."""
        deadline = time.monotonic() + grace
        for service in reversed(self.services):
            remaining = max(0.01, deadline - time.monotonic())
            stopping = asyncio.get_running_loop().create_task(service.stop())
            # Not wait_for: it waits for a cancelled call to end, forever if it ignores that.
            try:
                done, _ = await asyncio.wait({stopping}, timeout=remaining)
            except asyncio.CancelledError:
                stopping.cancel()
                raise
            if not done:
                stopping.cancel()
                self.abandoned.add(stopping)
                stopping.add_done_callback(functools.partial(self._left, service))
                logger.warning(
                    "%s %s did not stop within the grace time; left running",
                    service.kind,
                    service.name,
                )
            elif not stopping.cancelled() and stopping.exception() is not None:
                logger.error(
                    "%s %s failed to stop",
                    service.kind,
                    service.name,
                    exc_info=stopping.exception(),
                )
        self.services.clear()
        if self.monitor is not None:
            self.monitor.stop()
        if self.owns_db:
            await self.db.close(timeout=max(0.1, deadline - time.monotonic()))


class Lifespan:
    """An ASGI lifespan for Starlette and FastAPI: ``Starlette(lifespan=lifespan(url))``.

    The running ``Runtime`` is put in the lifespan state (``request.state.awaitdb``) and on
    ``app.state.awaitdb``.
    """

    def __init__(
        self,
        url_or_db: str | Database | None = None,
        *,
        migrations: str | None = None,
        workers: Iterable[Any] = (),
        consumers: Iterable[Any] = (),
        monitor: bool | LoopMonitor = True,
        grace: float = 10.0,
        **options: Any,
    ) -> None:
        if url_or_db is not None and not isinstance(url_or_db, str | Database):
            raise InterfaceError(
                f"lifespan needs a URL or a Database, not {type(url_or_db).__name__}"
            )
        if not isinstance(grace, int | float) or grace <= 0:
            raise InterfaceError(f"grace must be a positive number of seconds, not {grace!r}")
        self._target = url_or_db
        self._connecting = (
            connect(url_or_db, migrations=migrations, **options)
            if not isinstance(url_or_db, Database)
            else None
        )  # a bad URL or option fails here, when the app is built
        self.migrations = None if migrations is None else str(migrations)
        self.workers = list(workers)
        self.consumers = list(consumers)
        self.monitor = monitor
        self.grace = float(grace)

    async def start(self) -> Runtime:
        """Open and start everything; on a failure, stop what already started and re-raise."""
        if self._connecting is None:
            assert isinstance(self._target, Database)
            runtime = Runtime(self._target, owns_db=False, migrations=self.migrations)
            if self.migrations:
                from .._migrate.runner import migrate

                await migrate(self._target, self.migrations)
        else:
            runtime = Runtime(await self._connecting, owns_db=True, migrations=self.migrations)
        try:
            if self.monitor:
                monitor = self.monitor if isinstance(self.monitor, LoopMonitor) else LoopMonitor()
                runtime.monitor = monitor.start()
            for kind, items in (("worker", self.workers), ("consumer", self.consumers)):
                for item in items:
                    runtime.services.append(await _start(kind, item, runtime.db))
        except BaseException:
            await runtime.stop(self.grace)
            raise
        return runtime

    @contextlib.asynccontextmanager
    async def _run(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        runtime = await self.start()
        state = getattr(app, "state", None)
        if state is not None:
            state.awaitdb = runtime
        try:
            yield {"awaitdb": runtime}
        finally:
            await runtime.stop(self.grace)

    def __call__(self, app: Any) -> contextlib.AbstractAsyncContextManager[dict[str, Any]]:
        return self._run(app)


def lifespan(
    url_or_db: str | Database | None = None,
    *,
    migrations: str | None = None,
    workers: Iterable[Any] = (),
    consumers: Iterable[Any] = (),
    monitor: bool | LoopMonitor = True,
    grace: float = 10.0,
    **options: Any,
) -> Lifespan:
    """A Starlette/FastAPI lifespan that opens the database (migrating when asked), starts the
    loop monitor, workers and consumers, and stops them in reverse order within ``grace`` s."""
    return Lifespan(
        url_or_db,
        migrations=migrations,
        workers=workers,
        consumers=consumers,
        monitor=monitor,
        grace=grace,
        **options,
    )


def runtime_of(request: Any) -> Runtime:
    """The ``Runtime`` of the lifespan serving ``request`` (a Starlette ``Request``/scope)."""
    state = getattr(request, "state", None)
    runtime = getattr(state, "awaitdb", None) if state is not None else None
    if runtime is None:
        app_state = getattr(getattr(request, "app", None), "state", None)
        runtime = getattr(app_state, "awaitdb", None)
    if not isinstance(runtime, Runtime):
        raise InterfaceError(
            "no awaitdb runtime on this app: pass lifespan=awaitdb.web.lifespan(...) to it"
        )
    return runtime
