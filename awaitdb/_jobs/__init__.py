"""Durable jobs: the private modules behind ``awaitdb.jobs`` (see ``awaitdb/jobs.py``)."""
