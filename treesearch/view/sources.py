"""What a PATH given to the viewer is, and the page data made from it.

- a self-play run directory (``config.yaml`` in it): every round's training trees
  (``round_N/trees.jsonl.gz``), with the round's problems regenerated from the config
  exactly as self-play drew them, step texts decoded by the tokenizer of the policy that
  searched the round, answer nodes and the chosen answer judged against the problems'
  labels (training problems have them; the labels are read here, after the search), and
  per-round charts from ``metrics.jsonl`` and the critics' calibration files;
- a trees file (JSONL or JSONL.gz): inside a run's ``round_N`` folder it is that round of
  that run; elsewhere ``recipe`` (a self-play recipe: task, answer rule) and ``model``
  (the tokenizer) say how to read it, and without them the steps show as token ids;
- a decode result (``decode.json`` of ``python -m treesearch.decode``, or its folder):
  accuracy against tokens per strategy; it stores no trees.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from omegaconf import OmegaConf

from policies.zoo import resolve
from treesearch.config import RENAMES, SelfPlayConfig, build_task, train_problems
from treesearch.search.config import SearchConfig
from treesearch.utils.recipes import ConfigError, load_recipe
from treesearch.view.charts import (
    decode_charts,
    read_metrics,
    reliability_chart,
    run_charts,
)
from treesearch.view.errors import ViewError
from treesearch.view.treefile import read_trees
from treesearch.view.trees import (
    PARTS,
    carried_parts,
    chosen_nodes,
    step_texts,
    tree_record,
)

# trees larger than this many nodes open collapsed below a depth (the page's default)
DRAW_LIMIT = 10_000
_ROUND_DIR = re.compile(r"round_(\d+)")
DECODE_NOTE = ("A decode result stores accuracy per strategy and budget, not its search "
               "trees: the charts only.")


def load_tokenizer(model_dir: Path):
    """The tokenizer saved in a model directory (local files only)."""
    from transformers import AutoTokenizer  # lazy: only trees need it

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # OSError, ValueError, json errors: name the directory
        raise ViewError(f"{model_dir}: cannot load the tokenizer "
                        f"({type(exc).__name__}: {exc})") from exc


def _decoder(tokenizer):
    return lambda spans: tokenizer.batch_decode(spans, skip_special_tokens=True)


def _problem_entry(rec: dict, pid: str, problem=None) -> dict:
    return {"id": pid, "question": problem.question if problem is not None else None,
            "label": problem.label if problem is not None else None, **rec}


def _round_entry(key: str, label: str, note: str, problems: list[dict]) -> dict:
    solved = [p["solved"] for p in problems if p["solved"] is not None]
    return {"key": key, "label": label, "note": note, "count": len(problems),
            "solved": sum(solved) / len(solved) if solved else None, "problems": problems}


def _select_problem(rounds: list[dict], problem: str | None, source) -> list[dict]:
    """Keep only ``problem`` (an id, or a tree index as ``#N``) in every round; ViewError
    naming it when no round holds it."""
    if problem is None:
        return rounds
    out = []
    for rnd in rounds:
        keep = [p for i, p in enumerate(rnd["problems"])
                if p["id"] == problem or problem == f"#{i}"]
        if keep:
            out.append({**_round_entry(rnd["key"], rnd["label"], rnd["note"], keep),
                        "reliability": rnd.get("reliability")})
    if not out:
        some = [p["id"] for rnd in rounds for p in rnd["problems"][:3]][:6]
        raise ViewError(f"{source}: no problem {problem!r} (ids look like {', '.join(some)}; "
                        f"or give a tree index as '#N')")
    return out


class RunSource:
    """A self-play run directory: its config, state and each round's trees."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.cfg = load_recipe(SelfPlayConfig, path / "config.yaml", renames=RENAMES)
            self.task = build_task(self.cfg)
        except ConfigError as exc:
            raise ViewError(f"{path / 'config.yaml'}: {exc}") from exc
        self.search: SearchConfig = OmegaConf.to_object(self.cfg.search)
        state = path / "state.json"
        try:
            self.done = set(json.loads(state.read_text())["done"]) if state.is_file() else set()
        except (ValueError, KeyError, TypeError) as exc:
            raise ViewError(f"{state}: not a run state ({exc})") from exc
        self._tokenizers: dict[Path, object] = {}

    def rounds(self) -> list[int]:
        """The rounds whose trees are saved, ascending."""
        found = [int(m.group(1)) for d in self.path.iterdir()
                 if (m := _ROUND_DIR.fullmatch(d.name)) and (d / "trees.jsonl.gz").is_file()]
        return sorted(found)

    def policy_dir(self, round_: int) -> Path:
        """The policy that searched ``round_`` (self-play's ``policy_dir(round_ - 1)``);
        a saved round's when the starting model cannot be found here (distillation keeps
        the tokenizer, so any round's decodes the same steps)."""
        for k in range(round_ - 1, 0, -1):
            if f"{k}/distill" in self.done:
                return self.path / f"round_{k}" / "policy"
        try:
            return resolve(self.cfg.policy.model)
        except (FileNotFoundError, ValueError) as exc:
            saved = sorted(self.path.glob("round_*/policy/tokenizer_config.json"))
            if saved:
                return saved[0].parent
            raise ViewError(f"{self.path}: the starting policy {self.cfg.policy.model!r} is not "
                            f"here and no round saved one ({exc})") from exc

    def tokenizer(self, round_: int):
        where = self.policy_dir(round_)
        if where not in self._tokenizers:
            self._tokenizers[where] = load_tokenizer(where)
        return self._tokenizers[where]

    def problems(self, round_: int) -> list:
        return train_problems(self.cfg, self.task, round_)

    def round_entry(self, round_: int) -> dict:
        """One round's trees as page data."""
        trees = self.path / f"round_{round_}" / "trees.jsonl.gz"
        forest = read_trees(trees)
        problems = self.problems(round_)
        if forest.n_trees != len(problems):
            raise ViewError(f"{trees}: {forest.n_trees} trees, but the run's config draws "
                            f"{len(problems)} training problems for round {round_}")
        texts = step_texts(forest, _decoder(self.tokenizer(round_)))
        chosen = chosen_nodes(forest, texts, self.task, self.search)
        q = forest.q(self.search.gamma)
        entries = [_problem_entry(tree_record(forest, b, texts[b], task=self.task, problem=p,
                                              chosen=int(chosen[b]), q=q), p.id, p)
                   for b, p in enumerate(problems)]
        c = self.cfg.critics
        judge = "the rule verifier" if c.train_outcome == "verifier" else f"the {c.outcome} ORM"
        note = (f"Training search of round {round_}: answers judged by {judge} during the "
                f"search; correct / wrong marks from the problems' labels, read after it.")
        return {**_round_entry(f"r{round_}", f"round {round_}", note, entries),
                "reliability": reliability_chart(self.path / f"round_{round_}")}

    def part_names(self) -> dict[str, str]:
        c = self.cfg.critics
        names = dict(PARTS)
        names["c_value"] = f"value critic ({c.value})"
        names["c_process"] = f"PRM ({c.process})"
        names["c_outcome"] = ("ORM slot: rule verifier" if c.train_outcome == "verifier"
                              else f"ORM ({c.outcome})")
        return names


def run_page(path: Path, *, round_: int | None = None, problem: str | None = None) -> dict:
    """Page data for a run directory (all rounds with trees, or ``round_``)."""
    run = RunSource(path)
    available = run.rounds()
    if not available:
        raise ViewError(f"{path}: no round's trees yet (no round_N/trees.jsonl.gz)")
    if round_ is not None and round_ not in available:
        raise ViewError(f"{path}: round {round_} has no trees; rounds with trees: "
                        f"{', '.join(map(str, available))}")
    rounds = [run.round_entry(r) for r in ([round_] if round_ is not None else available)]
    rounds = _select_problem(rounds, problem, path)
    metrics = path / "metrics.jsonl"
    charts = run_charts(read_metrics(metrics)) if metrics.is_file() else []
    about = (f"task {run.cfg.task}, answer rule '{run.search.answer}', "
             f"{run.cfg.train_problems} training problems per round.")
    return _page(f"Self-play run {path.name}", "run", str(path), rounds, charts,
                 run.part_names(), notes=[about])


def trees_page(path: Path, *, recipe: str | None = None, model: str | None = None,
               problem: str | None = None, round_: int | None = None) -> dict:
    """Page data for one trees file."""
    run_dir = path.parent.parent
    match = _ROUND_DIR.fullmatch(path.parent.name)
    if match and (run_dir / "config.yaml").is_file() and recipe is None and model is None:
        if round_ is not None and round_ != int(match.group(1)):
            raise ViewError(f"{path}: this file is round {match.group(1)}, not round {round_}")
        page = run_page(run_dir, round_=int(match.group(1)), problem=problem)
        return {**page, "source": str(path)}
    if round_ is not None:
        raise ViewError(f"{path}: --round applies to a run directory or a file in one")
    task, search, notes = None, SearchConfig(), []
    if recipe is not None:
        try:
            cfg = load_recipe(SelfPlayConfig, recipe, renames=RENAMES)
            task, search = build_task(cfg), OmegaConf.to_object(cfg.search)
        except ConfigError as exc:
            raise ViewError(f"{recipe}: {exc}") from exc
        model = model or cfg.policy.model
    forest = read_trees(path)
    decode = None
    if model is not None:
        try:
            decode = _decoder(load_tokenizer(resolve(model)))
        except (FileNotFoundError, ValueError) as exc:
            raise ViewError(f"{model}: {exc}") from exc
    else:
        notes.append("No model given (--model or --config): steps show as token ids.")
    if task is None:
        notes.append("No task given (--config): every terminal step counts as an answer and "
                     "the chosen node is the end of the most visited descent.")
    notes.append("No labels: answers are not marked correct or wrong.")
    texts = step_texts(forest, decode)
    chosen = chosen_nodes(forest, texts, task, search)
    q = forest.q(search.gamma)
    entries = [_problem_entry(tree_record(forest, b, texts[b], task=task, chosen=int(chosen[b]),
                                          q=q), f"tree {b}")
               for b in range(forest.n_trees)]
    rounds = _select_problem([_round_entry("trees", path.name, "", entries)], problem, path)
    return _page(f"Search trees {path.name}", "trees", str(path), rounds, [], dict(PARTS),
                 notes=notes)


def decode_page(path: Path) -> dict:
    """Page data for a decode result: its charts, no trees."""
    if path.is_dir():
        path = path / "decode.json"
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ViewError(f"{path}: no such decode result") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ViewError(f"{path}: not a JSON decode result ({exc})") from exc
    if not isinstance(result, dict):
        raise ViewError(f"{path}: not a decode result (expected a JSON object)")
    return _page(f"Decode result {path.parent.name}/{path.name}", "decode", str(path), [],
                 decode_charts(result, path), dict(PARTS),
                 notes=[DECODE_NOTE])


def _page(title, kind, source, rounds, charts, part_names, notes) -> dict:
    records = [p for rnd in rounds for p in rnd["problems"]]
    parts = [{"key": k, "label": part_names.get(k, k)} for k in carried_parts(records)]
    return {"title": title, "kind": kind, "source": source, "notes": notes, "parts": parts,
            "rounds": rounds, "charts": charts, "limit": DRAW_LIMIT}


def page_data(path, *, round_: int | None = None, problem: str | None = None,
              recipe: str | None = None, model: str | None = None) -> dict:
    """The page data for PATH (a run directory, a trees file or a decode result); a
    ``ViewError`` naming the input when it cannot be shown."""
    path = Path(path)
    if not path.exists():
        raise ViewError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "config.yaml").is_file():
            if recipe is not None or model is not None:
                raise ViewError(f"{path}: a run directory brings its own config and model")
            return run_page(path, round_=round_, problem=problem)
        if (path / "decode.json").is_file():
            return decode_page(path)
        raise ViewError(f"{path}: neither a run directory (config.yaml) nor a decode "
                        f"result (decode.json)")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return trees_page(path, recipe=recipe, model=model, problem=problem, round_=round_)
    if path.name.endswith(".json"):
        return decode_page(path)
    raise ViewError(f"{path}: not a trees file (.jsonl, .jsonl.gz) or a decode result (.json)")
