"""``python -m treesearch.selfplay``: rounds of search -> refit critics -> distill -> evaluate.

    python -m treesearch.selfplay                                  # configs/default.yaml
    python -m treesearch.selfplay rounds=5 critics.process=none    # dotlist overrides
    python -m treesearch.selfplay --config configs/smollm2.yaml
    python -m treesearch.selfplay --resume runs/selfplay-20261126-221500
    python -m treesearch.selfplay --resume RUN --redo 2/distill   # re-run it and what follows
    python -m treesearch.selfplay --check RUN                     # exit 0: the run is healthy

Round 0 evaluates the starting policy. Then every round:

    search    MCTS over this round's training problems (policy + learned value critic;
              outcomes scored by the rule verifier on these LABELLED TRAINING problems,
              or by the learned ORM with critics.train_outcome=learned); trees saved
    critics   value targets (node Q), PRM targets (share of each node's rollouts that
              ended correct: Math-Shepherd labels from the tree, no extra generation) and
              ORM targets (verifier labels of answer nodes) from the trees; each learned
              critic refit and its held-out calibration saved
    distill   SFT on the best verified-correct path of each problem (and DPO on sibling
              steps with distill.method=sft+dpo; a weighted REINFORCE pass with the
              failing siblings pushed down with wreinforce; step advantages from the tree
              with tree_pg; diversity options distill.distinct / unlikeliness /
              prior_samples, off by default); the policy checkpoint saved
    eval      on held-out problems, never labelled during decoding: greedy accuracy,
              sampled pass@k, and MCTS decoding at a fixed token budget with the learned
              critics only; with eval.passk_samples > 0 also pass@k for k up to it,
              distinct correct solutions, token entropy, format and strategy shares
              (``passk.png``, a second table in summary.md)

With ``distributed.backend=ray`` the search and eval stages run as shards of
``distributed.shard_problems`` problems on Ray worker actors (``treesearch.distributed``,
``selfplay.shards``); shards are seeded by (seed, round, part, shard index), so the metrics
equal a local run with the same shard size, whatever the number of workers.

Everything lands in the run directory (``treesearch.utils.runs``): the resolved config,
metrics.jsonl, each round's trees (compressed JSONL), checkpoints, calibration plots,
``accuracy.png``, ``summary.md`` and ``report.html`` (``selfplay.report``). A killed run
continues with ``--resume`` from the last finished stage; every stage seeds itself from
(seed, round, stage) and reloads its inputs from disk, so a resumed run computes what an
uninterrupted one would. A resume first sweeps the temporaries of writes the kill cut
short; ``--redo`` and ``--check`` are ``heal``'s.

The modules: ``run`` holds the round loop, its explicit stage table (``SelfPlay.stages``)
and resume; ``models`` the run's checkpoints (which policy and critics hold after a round,
loaded on the configured backends); ``shards`` the search and eval stages' typed work
items (``WorkItem``) and the object that runs them (``StageShards``); ``report`` the
summary, plots and tree viewer written at the end; ``heal`` the stage table's outputs,
``--redo`` (a stage and every later one run again from its inputs) and ``--check`` (a run's
checkpoints, trees and metrics against its state). The stage bodies live in
``treesearch.stages`` (search, critics, harvest, train, evaluate), shared with the study.
"""

from treesearch.selfplay.run import SelfPlay, main

__all__ = ["SelfPlay", "main"]
