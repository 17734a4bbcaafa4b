"""Private modules behind ``awaitdb.events``."""
