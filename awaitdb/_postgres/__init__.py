"""The PostgreSQL backend: asyncpg for the async face, psycopg 3 for the sync face."""
