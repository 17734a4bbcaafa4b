"""Health endpoints: ``/health`` (alive), ``/health/ready`` (200 or 503 with the reasons) and
``/health/db-pool`` (the pool's stats as JSON). No URL, password or error text from the
driver appears in any of them: reasons are built from error class names and counts.

Readiness checks, each with its reason when it fails::

    database answers ``SELECT 1`` within ``timeout``   "database: no answer (CannotConnect)"
    migrations are at head (when the lifespan has a folder)   "migrations: 1 pending (0002_x)"
    every worker and consumer is alive   "worker Worker: not running"
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._runtime import Runtime, runtime_of

__all__ = ["health_router", "health_routes", "readiness"]


async def readiness(runtime: Runtime, timeout: float = 2.0) -> list[str]:
    """The reasons the service is not ready (an empty list when it is)."""
    reasons: list[str] = []
    try:
        await asyncio.wait_for(runtime.db.fetch_val("SELECT 1"), timeout)
    except TimeoutError:
        reasons.append(f"database: no answer within {timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", never a 500
        reasons.append(f"database: no answer ({type(exc).__name__})")
    else:
        if runtime.migrations:
            from .._migrate.runner import Migrator

            try:
                rows = await Migrator(runtime.db, runtime.migrations).status()
            except Exception as exc:  # noqa: BLE001 - reported as a reason
                reasons.append(f"migrations: cannot read the status ({type(exc).__name__})")
            else:
                behind = [f"{r.version:04d}_{r.name}" for r in rows if r.state != "applied"]
                if behind:
                    states = sorted({r.state for r in rows if r.state != "applied"})
                    reasons.append(
                        f"migrations: not at head, {len(behind)} {'/'.join(states)} "
                        f"({', '.join(behind[:5])})"
                    )
    for service in runtime.dead_services():
        reasons.append(f"{service.kind} {service.name}: not running")
    return reasons


async def _live(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    return JSONResponse(
        {"status": "ok", "uptime_s": round(time.time() - runtime.started_at, 1)},
        headers={"Cache-Control": "no-store"},
    )


async def _ready(request: Request) -> JSONResponse:
    reasons = await readiness(runtime_of(request))
    body: dict[str, Any] = {"status": "ready" if not reasons else "not ready"}
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=503 if reasons else 200)


async def _pool(request: Request) -> JSONResponse:
    return JSONResponse(runtime_of(request).db.stats().as_dict())


def health_routes(prefix: str = "/health") -> list[Route]:
    """The three health routes, for ``Starlette(routes=[..., *health_routes()])``."""
    return [
        Route(prefix, _live, methods=["GET"], name="health"),
        Route(f"{prefix}/ready", _ready, methods=["GET"], name="health_ready"),
        Route(f"{prefix}/db-pool", _pool, methods=["GET"], name="health_db_pool"),
    ]


def health_router(prefix: str = "/health") -> Any:
    """The health routes as a FastAPI ``APIRouter`` (``app.include_router(...)``), or a
    Starlette ``Router`` when FastAPI is not installed."""
    try:
        from fastapi import APIRouter
    except ImportError:
        from starlette.routing import Router

        return Router(routes=health_routes(prefix))
    router = APIRouter(tags=["health"])
    for route in health_routes(prefix):
        router.add_api_route(route.path, route.endpoint, methods=["GET"], name=route.name)
    return router
