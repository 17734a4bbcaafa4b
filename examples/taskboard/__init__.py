"""The task board: a reference FastAPI service on awaitdb (see README.md beside this file)."""
