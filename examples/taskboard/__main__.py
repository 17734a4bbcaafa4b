"""``python -m examples.taskboard [--host 127.0.0.1] [--port 8000]``: serve the task board.

The database is ``$AWAITDB_URL`` (default ``sqlite:///taskboard.db``); it is migrated at start.
"""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.taskboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--url", default=None, help="database URL (default: $AWAITDB_URL)")
    args = parser.parse_args()
    uvicorn.run(create_app(args.url), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
