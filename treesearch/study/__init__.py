"""``python -m treesearch.study`` (TOP layer): priors x optimizers x seeds, measured on
held-out problems; ``config`` is the recipe, ``run`` the grid and its cache, ``training``
trains a cell, ``cells`` measures it (``measure``: the sample-based measurements) and
``report`` the tables and plots."""
