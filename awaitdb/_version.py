"""The package version, written here only: pyproject.toml reads it (``dynamic``), the CLI and
``awaitdb.__version__`` import it, and the migration ledger records it."""

__version__ = "0.1.0"
