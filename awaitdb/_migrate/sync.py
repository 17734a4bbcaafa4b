"""Migrations for the sync face: run the async migrator on a private loop in a helper thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from .._config import Config

if TYPE_CHECKING:
    from .runner import RunResult

__all__ = ["migrate_in_thread"]


def migrate_in_thread(config: Config) -> RunResult:
    """Apply ``config``'s migrations with an async connection of their own, then close it."""
    from .._async.database import open_database
    from .runner import migrate

    options = {k: v for k, v in config.options.items() if k != "migrations"}
    plain = dataclasses.replace(config, options=options)
    errors: list[BaseException] = []
    results: list[RunResult] = []

    async def run() -> None:
        db = await open_database(plain)
        try:
            results.append(await migrate(db, config.options["migrations"]))
        finally:
            await db.close()

    def main() -> Any:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=main, name="awaitdb-migrate")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]
