"""The async source of truth; ``awaitdb/_sync`` is generated from these modules."""
