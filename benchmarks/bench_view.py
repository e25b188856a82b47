"""How fast the tree viewer draws a large tree: a page with 10,000 nodes of one real search
tree, opened in headless Chromium, timed until the tree is drawn and the page
answers a click.

    python benchmarks/bench_view.py --json benchmarks/results/view_10k.json

The tree is searched here (unless ``--trees`` names one): the shipped tiny-countdown3
policy on one countdown3 problem, label-free checkers as PRM and ORM, wide (22 samples
per expansion, no state merging, no early stop) under a token budget large enough for
``--nodes`` live nodes; it is cached under ``--cache`` (about a minute on two CPU
cores). The page shows the tree's first ``--nodes`` nodes breadth-first (the top of
the real tree, every parent kept), so that exactly that many are drawn: past 10,000 the
page opens collapsed below a depth. Each repeat loads the page fresh and records

- ``ready_ms``: navigation start -> the tree drawn and painted (the page's own
  ``performance.now()`` after its first frame);
- ``click_ms``: a click on the chosen answer's node -> its details shown;
- ``interactive_ms``: ``ready_ms + click_ms``, the figure the issue bounds (< 2 s);
- ``wall_ms``: the driver's wall time from ``goto`` to the ready mark.

The whole tree (past 10,000 nodes) is opened too: it opens collapsed below a depth
(``whole_tree``: nodes drawn, ready, and ``expand_all_ms`` until every node is drawn).
Medians over ``--repeats``. Needs Chromium (``/usr/bin/chromium`` or ``--chromium``) and
the playwright package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# after the sys.path insert above, so the script runs from a checkout without installing
from treesearch.view.page import write_html  # noqa: E402
from treesearch.view.sources import page_data  # noqa: E402


def search_tree(path: Path, nodes: int, seed: int) -> dict:
    """Search one countdown3 problem until its tree holds about ``nodes`` nodes; write the
    trees file to ``path``; returns what was searched."""
    import torch

    from critics.compose import StepScorer
    from policies.hf import HFPolicy
    from policies.zoo import resolve
    from treesearch.backends import build_critic
    from treesearch.engine.export import write_jsonl
    from treesearch.search import SearchConfig, StepSearch
    from treesearch.tasks import get_task

    torch.set_num_threads(1)
    task = get_task("countdown3")
    problems = task.problems("val", 1, seed=seed)
    policy = HFPolicy(resolve("tiny-countdown3"), step_delimiter=task.step_delimiter,
                      temperature=1.0, seed=seed)
    checkers = {kind: build_critic(kind, "checker", task=task, problems=problems,
                                   policy_tokenizer=policy.tokenizer)
                for kind in ("process", "outcome")}
    scorer = StepScorer(None, checkers["process"], checkers["outcome"])
    # wide and shallow: 22 samples per expansion, one leaf a round (a node expanded again
    # is widened, which leaves detached rows in the file: more leaves a round, more rows)
    config = SearchConfig(simulations=nodes, leaves_per_tree=1, branching=22, merge=False,
                          horizon=1, max_children=22, widen_c=0.0, max_depth=6,
                          early_stop=False, max_tokens=None)
    search = StepSearch(policy, scorer, task, policy.tokenizer, config)
    start = time.perf_counter()
    result = _run_until(search, problems, nodes)
    write_jsonl(result.forest, path)
    f = result.forest
    return {"problem": problems[0].id, "nodes": int((f.depth[0, :f.n_nodes[0]] >= 0).sum()),
            "search_seconds": round(time.perf_counter() - start, 1),
            "config": {k: getattr(search.config, k) for k in (
                "leaves_per_tree", "branching", "merge", "max_children", "widen_c", "max_depth",
                "max_tokens")}}


def _run_until(search, problems, nodes: int):
    """Search under a token budget of 15 tokens per wanted node (about 8 live nodes per
    hundred tokens here), raised by half until the tree holds ``nodes`` live nodes."""
    from dataclasses import replace

    budget = 15 * nodes
    while True:
        search.config = replace(search.config, max_tokens=budget, simulations=10 * nodes)
        result = search.run(problems)
        f = result.forest
        live = int((f.depth[0, :f.n_nodes[0]] >= 0).sum())
        print(f"searched {live} live nodes with {budget} tokens", file=sys.stderr)
        if live >= nodes:
            return result
        budget = int(budget * 1.5)


def first_nodes(problem: dict, nodes: int) -> dict:
    """The page record of a tree cut to its first ``nodes`` nodes breadth-first (depth by
    depth, each depth in row order): a real tree's top, closed under parents."""
    cols = problem["columns"]
    if problem["n"] <= nodes:
        return problem
    order = sorted(range(problem["n"]), key=lambda i: (cols["depth"][i], i))[:nodes]
    keep = sorted(order)
    new = {old: k for k, old in enumerate(keep)}
    out = {key: [values[i] for i in keep] for key, values in cols.items()}
    out["parent"] = [new[cols["parent"][i]] if cols["parent"][i] >= 0 else -1 for i in keep]
    chosen = problem["chosen"]
    while chosen not in new:  # the chosen node cut off: its deepest kept ancestor
        chosen = cols["parent"][chosen]
    return {**problem, "columns": out, "n": nodes, "chosen": new[chosen]}


def _open(browser, page: Path) -> tuple:
    """A fresh tab on ``page`` once drawn: (tab, errors, driver wall ms, ready ms)."""
    tab = browser.new_page(viewport={"width": 1400, "height": 850})
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    start = time.perf_counter()
    tab.goto(page.as_uri())
    tab.wait_for_selector("body[data-ready]", timeout=60_000)
    wall = (time.perf_counter() - start) * 1000
    return tab, errors, wall, float(tab.get_attribute("body", "data-ready-ms"))


# run in the page: act, then resolve with the ms until the next frame was painted
_TIMED = """(selector) => new Promise((done) => {
    const target = document.querySelector(selector);
    const t0 = performance.now();
    target.dispatchEvent(new MouseEvent('click', {bubbles: true}));
    requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
})"""


def measure(browser, page: Path, repeats: int) -> list[dict]:
    """Per repeat: ready, click on the chosen node -> details, drawn nodes."""
    rows = []
    for _ in range(repeats):
        tab, errors, wall, ready = _open(browser, page)
        click = tab.evaluate(_TIMED, "#nodes circle.chosen")
        rows.append({"ready_ms": round(ready, 1), "click_ms": round(click, 1),
                     "interactive_ms": round(ready + click, 1), "wall_ms": round(wall, 1),
                     "drawn": int(tab.get_attribute("#tree", "data-drawn")),
                     "details_shown": tab.get_attribute("#details", "data-node") is not None,
                     "errors": errors})
        tab.close()
    return rows


def measure_collapsed(browser, page: Path, repeats: int) -> list[dict]:
    """Per repeat, for a tree past the limit: ready (opened collapsed), drawn nodes, the
    depth it collapsed below, and 'expand all' -> every node drawn."""
    rows = []
    for _ in range(repeats):
        tab, errors, _, ready = _open(browser, page)
        drawn, depth = int(tab.get_attribute("#tree", "data-drawn")), tab.input_value("#depth")
        expand = tab.evaluate(_TIMED, "#expand-all")
        rows.append({"ready_ms": round(ready, 1), "drawn": drawn, "collapsed_below": depth,
                     "expand_all_ms": round(expand, 1),
                     "drawn_expanded": int(tab.get_attribute("#tree", "data-drawn")),
                     "errors": errors})
        tab.close()
    return rows


def _median(rows: list[dict], keys) -> dict:
    return {k: round(statistics.median(r[k] for r in rows), 1) for k in keys}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--trees", default=None, help="a trees file to draw (its first tree)")
    parser.add_argument("--cache",
                        default=str(Path(tempfile.gettempdir()) / "treesearch-bench-view"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    # lazy: only the measurement needs the browser driver
    from playwright.sync_api import sync_playwright

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    searched = None
    if args.trees:
        trees = Path(args.trees)
    else:
        trees = cache / f"countdown3-{args.nodes}-seed{args.seed}.jsonl.gz"
        info = trees.with_suffix(".info.json")
        if trees.is_file() and info.is_file():
            searched = json.loads(info.read_text())
        else:
            searched = search_tree(trees, args.nodes, args.seed)
            info.write_text(json.dumps(searched))
    start = time.perf_counter()
    data = page_data(trees, recipe="default", problem="#0")
    whole = data["rounds"][0]["problems"][0]
    data["rounds"][0]["problems"][0] = first_nodes(whole, args.nodes)
    page = write_html(data, cache / "page.html")
    build = time.perf_counter() - start
    n = data["rounds"][0]["problems"][0]["n"]
    data["rounds"][0]["problems"][0] = whole
    whole_page = write_html(data, cache / "whole.html")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True)
        rows = measure(browser, page, args.repeats)
        over = measure_collapsed(browser, whole_page, args.repeats) if whole["n"] > n else []
        version = browser.version
        browser.close()
    med = _median(rows, ("ready_ms", "click_ms", "interactive_ms", "wall_ms"))
    figure = {"nodes": n, "drawn": rows[0]["drawn"], "page_bytes": page.stat().st_size,
              "build_seconds": round(build, 2), "median": med, "runs": rows,
              "under_2s": med["interactive_ms"] < 2000, "searched": searched,
              "chromium": version, "cpus": os.cpu_count(),
              "load_average_1min": round(os.getloadavg()[0], 2)}
    print(f"{n} nodes ({rows[0]['drawn']} drawn), page {figure['page_bytes'] / 1e6:.1f} MB "
          f"built in {build:.1f} s; Chromium {version}, load {figure['load_average_1min']}")
    print(f"median of {len(rows)}: ready {med['ready_ms']:.0f} ms, click {med['click_ms']:.0f} ms, "
          f"interactive {med['interactive_ms']:.0f} ms (bound 2000 ms), wall "
          f"{med['wall_ms']:.0f} ms")
    if over:
        figure["whole_tree"] = {"nodes": whole["n"], "runs": over,
                                "median": _median(over, ("ready_ms", "expand_all_ms")),
                                "drawn": over[0]["drawn"],
                                "collapsed_below": over[0]["collapsed_below"]}
        w = figure["whole_tree"]
        print(f"the whole {whole['n']}-node tree: opens collapsed below depth "
              f"{w['collapsed_below']} ({w['drawn']} drawn), ready "
              f"{w['median']['ready_ms']:.0f} ms; "
              f"expand all {w['median']['expand_all_ms']:.0f} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figure, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
