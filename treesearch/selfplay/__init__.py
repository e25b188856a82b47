"""``python -m treesearch.selfplay`` (TOP layer): rounds of search -> refit critics ->
distill -> evaluate. ``run`` is the round loop, its stage table and resume; ``models`` the
run's checkpoints (which policy and critics hold after a round, loaded on the configured
backends); ``shards`` the search and eval stages' work items; ``report`` the summary,
plots and tree viewer written at the end."""

from treesearch.selfplay.run import SelfPlay, main

__all__ = ["SelfPlay", "main"]
