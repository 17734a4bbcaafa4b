"""Migrations: versioned SQL/Python changes, a ledger, one lock, guards, backups, checks."""
