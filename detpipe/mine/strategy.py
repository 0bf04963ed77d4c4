"""The selection strategies' names (no imports: the CLI reads them at start)."""

STRATEGIES = ("uncertainty", "entropy", "diversity", "random")
