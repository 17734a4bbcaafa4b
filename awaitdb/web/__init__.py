"""awaitdb.web: the glue between awaitdb and Starlette or FastAPI (``pip install 'awaitdb[web]'``).

app = FastAPI(lifespan=awaitdb.web.lifespan(url, migrations="migrations", workers=[...]))

@app.post("/orders")
async def create(order: Order, tx: awaitdb.web.Transaction) -> Record: ...  # one per request

app.include_router(awaitdb.web.health_router())   # /health, /health/ready, /health/db-pool
app.mount("/metrics", awaitdb.web.metrics_app())   # Prometheus text format

With plain Starlette: ``Starlette(routes=[..., *health_routes()], lifespan=lifespan(url))`` and
``async with awaitdb.web.transaction(request) as tx``. See docs/services.md.
"""

from __future__ import annotations

from typing import Any

from ._deps import counted_db, get_db, request_transaction, transaction
from ._health import health_router, health_routes, readiness
from ._metrics import metrics_app
from ._runtime import Lifespan, Runtime, Service, lifespan, runtime_of

try:  # the Annotated aliases need FastAPI; everything else works with plain Starlette
    from ._fastapi import DB, Transaction, db_dependency, transaction_dependency
except ImportError:  # pragma: no cover - FastAPI is not installed
    pass

__all__ = [
    "DB",
    "Lifespan",
    "Runtime",
    "Service",
    "Transaction",
    "counted_db",
    "db_dependency",
    "get_db",
    "health_router",
    "health_routes",
    "lifespan",
    "metrics_app",
    "readiness",
    "request_transaction",
    "runtime_of",
    "transaction",
    "transaction_dependency",
]


def __getattr__(name: str) -> Any:
    if name in ("DB", "Transaction", "db_dependency", "transaction_dependency"):
        raise ImportError(f"awaitdb.web.{name} is a FastAPI dependency: pip install fastapi")
    raise AttributeError(f"module 'awaitdb.web' has no attribute {name!r}")
