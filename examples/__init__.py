"""Runnable examples (``python -m examples.taskboard``)."""
