"""``python -m treesearch.study`` (TOP layer): priors x optimizers x seeds, measured on
held-out problems; ``config`` is the recipe, ``run`` the grid, ``measure`` the sample-based
measurements and ``report`` the tables and plots."""
