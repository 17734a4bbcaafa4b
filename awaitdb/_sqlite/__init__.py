"""The SQLite backend: worker threads for the async face, direct calls for the sync face."""
