"""The stages (between the apps and the step search): the pipeline self-play and the study
share. ``search`` searches problems with a built policy and critics and returns the trees,
answers, verdicts and accounting; ``train`` is the one optimizer registry
(``OPTIMIZERS``: every name self-play's ``distill.method`` and the study's optimizers hold,
each a function ``(model, tokenizer, TrainData, config) -> (model, stats)``); ``evaluate``
measures a policy on held-out problems (greedy, pass@k, MCTS decoding, diversity);
``harvest`` turns one search's trees into what an optimizer needs, ``critics`` refits the
learned critics on them. Everything
arrives built (policy, critics, configs as dataclasses): nothing here builds a backend or
reads a recipe.

    from treesearch.stages import search_problems
    searched = search_problems(policy, task, problems, SearchConfig(), verify=True)
    searched.solved_share, searched.result.forest
"""

from treesearch.stages.search import Searched, search_problems
from treesearch.stages.train import OPTIMIZERS, Optimizer, TrainData, from_trees

__all__ = ["OPTIMIZERS", "Optimizer", "Searched", "TrainData", "from_trees", "search_problems"]
