"""The step search (MIDDLE layer): MCTS over reasoning steps, decoding strategies under one
token budget, and harvesting training data from searched trees.

    from treesearch.search import SearchConfig, StepSearch
    result = StepSearch(policy, scorer, task, tokenizer, SearchConfig()).run(problems)

The policy and the scorer arrive as objects; nothing here builds a backend from config
(that is the apps' job: ``treesearch.selfplay``, ``treesearch.decode``, ``treesearch.study``).
"""

from treesearch.search.config import SearchConfig
from treesearch.search.result import SearchResult, SearchStats
from treesearch.search.stepsearch import EXTRA_FIELDS, StepSearch

__all__ = ["SearchConfig", "SearchResult", "SearchStats", "StepSearch", "EXTRA_FIELDS"]
