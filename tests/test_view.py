"""The tree viewer (``treesearch.view``): pages of a small real self-play run, checked in
headless Chromium (every node drawn, a click shows the step and its critic parts, the
highlighted path ends at the chosen answer, no network request, no script error), named
errors for malformed or truncated trees files with no HTML written, and escaping of model
text. The browser tests skip without Chromium and playwright (fail under
TREESEARCH_REQUIRE_OPTIONAL=1)."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from optional import missing

from treesearch.engine.export import read_jsonl, to_networkx
from treesearch.search.result import node_path
from treesearch.view import (
    TreeFileError,
    ViewError,
    build_html,
    page_data,
    write_report,
)
from treesearch.view.page import embed_json, write_html
from treesearch.view.report import write_view

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("TREESEARCH_CHROMIUM", "/usr/bin/chromium")


def _cli(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    """A real self-play run of one round (tiny-countdown3, six training problems:
    conftest's ``tiny_run``, shared with the CLI fuzz)."""
    return tiny_run


@pytest.fixture(scope="module")
def forest(run):
    return read_jsonl(run / "round_1" / "trees.jsonl.gz")


@pytest.fixture(scope="module")
def data(run):
    return page_data(run)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system packages, driven by playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        missing(f"playwright is not importable ({err}); pip install -e '.[test]'")
    if not Path(CHROMIUM).is_file():
        missing(f"no Chromium at {CHROMIUM}; apt-get install chromium (as .ci/run does)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


class Page:
    """A playwright page that records every request and every console or script error."""

    def __init__(self, browser, path: Path):
        self.tab = browser.new_page(viewport={"width": 1400, "height": 850})
        self.requests, self.errors = [], []
        self.tab.on("request", lambda r: self.requests.append(r.url))
        self.tab.on("console", lambda m: self.errors.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.url = path.resolve().as_uri()
        self.tab.goto(self.url)
        self.tab.wait_for_selector("body[data-ready]")

    def drawn_nodes(self) -> list[int]:
        return [int(x) for x in self.tab.eval_on_selector_all(
            "#nodes circle", "cs => cs.map(c => c.getAttribute('data-node'))")]

    def nodes_with(self, cls: str) -> list[int]:
        return [int(x) for x in self.tab.eval_on_selector_all(
            f"#nodes circle.{cls}", "cs => cs.map(c => c.getAttribute('data-node'))")]

    def click_node(self, node: int) -> None:
        self.tab.locator(f'#nodes circle[data-node="{node}"]').dispatch_event("click")
        self.tab.wait_for_selector(f'#details[data-node="{node}"]')

    def select_problem(self, index: int) -> None:
        self.tab.locator(f'#problem-list tr[data-index="{index}"]').click()

    def close_clean(self) -> None:
        """The page made no request beyond its own file and logged no error."""
        assert self.requests == [self.url], self.requests
        assert self.errors == []
        self.tab.close()


def _tokenizer(run: Path):
    """The tokenizer of the run's policy model."""
    from transformers import AutoTokenizer

    from policies.zoo import resolve
    from treesearch.config import load_config

    model = load_config(run / "config.yaml").policy.model
    return AutoTokenizer.from_pretrained(str(resolve(model)), local_files_only=True)


def _live(forest, b: int) -> np.ndarray:
    n = int(forest.n_nodes[b])
    return np.flatnonzero(forest.depth[b, :n] >= 0)


# -- the page data ---------------------------------------------------------------------------
def test_training_problems_are_drawn_as_selfplay_draws_them(run, data):
    """The page's problems of round 1 are self-play's training problems of that round,
    in order (both draw them with ``treesearch.config.train_problems``)."""
    from treesearch.config import load_config
    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    selfplay = SelfPlay(load_config(run / "config.yaml"), RunDir(run))
    (rnd,) = data["rounds"]
    assert [p["id"] for p in rnd["problems"]] == [p.id for p in selfplay.train_problems(1)]


def test_page_data_agrees_with_the_run(run, forest, data):
    """Every tree, with networkx's node count; the chosen answers solve exactly the share
    of problems self-play logged for the round's search."""
    (rnd,) = data["rounds"]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    search = next(m for m in metrics if m["stage"] == "search" and m["round"] == 1)
    assert rnd["count"] == forest.n_trees == 6
    assert rnd["solved"] == pytest.approx(search["train_solved"])
    for b, problem in enumerate(rnd["problems"]):
        assert problem["n"] == to_networkx(forest, b).number_of_nodes()
        cols = problem["columns"]
        assert cols["node"] == _live(forest, b).tolist()
        answers = [i for i, k in enumerate(cols["kind"]) if k == 1]
        assert all(cols["correct"][i] in (0, 1) for i in answers)
        assert all(cols["correct"][i] is None for i in range(problem["n"]) if i not in answers)
        if problem["answer"] is not None:
            assert cols["kind"][problem["chosen"]] == 1
            assert problem["solved"] == bool(cols["correct"][problem["chosen"]])
    keys = [p["key"] for p in data["parts"]]
    assert {"q", "score", "c_value", "c_outcome"} <= set(keys)
    assert "c_process" in keys  # the default recipe learns a PRM


def test_unknown_round_or_problem_is_named(run):
    with pytest.raises(ViewError, match="round 7 has no trees"):
        page_data(run, round_=7)
    with pytest.raises(ViewError, match="no problem 'nope'"):
        page_data(run, problem="nope")
    with pytest.raises(ViewError, match="no such file or directory"):
        page_data(run / "missing")


def test_trees_file_outside_a_run(run, data, tmp_path):
    """Away from its run a trees file reads with the recipe it was searched with (same
    texts, same chosen nodes, no labels); with nothing, its steps show as token ids."""
    alone = tmp_path / "elsewhere.jsonl.gz"
    shutil.copy(run / "round_1" / "trees.jsonl.gz", alone)
    page = page_data(alone, recipe=str(run / "config.yaml"))
    ours, theirs = page["rounds"][0]["problems"], data["rounds"][0]["problems"]
    assert [p["columns"]["text"] for p in ours] == [p["columns"]["text"] for p in theirs]
    assert [p["chosen"] for p in ours] == [p["chosen"] for p in theirs]
    assert all(p["solved"] is None and set(p["columns"]["correct"]) == {None} for p in ours)
    bare = page_data(alone)["rounds"][0]["problems"][0]["columns"]["text"]
    assert bare[0] == "" and all(re.fullmatch(r"\[[0-9 ]+\]", t) for t in bare[1:])


def test_cli_writes_one_problem(run, data, tmp_path):
    pid = data["rounds"][0]["problems"][2]["id"]
    out = tmp_path / "one.html"
    proc = _cli("-m", "treesearch.view", str(run), "--round", "1", "--problem", pid,
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.count('id="data-round-') == 1 and pid in text
    others = [p["id"] for p in data["rounds"][0]["problems"] if p["id"] != pid]
    assert not any(f'"id":"{o}"' in text for o in others)


# -- malformed trees files ---------------------------------------------------------------------
def _plain_lines(run: Path) -> list[str]:
    with gzip.open(run / "round_1" / "trees.jsonl.gz", "rt", encoding="utf-8") as fh:
        return fh.read().splitlines(keepends=True)


def _truncated_gzip(run, path):
    raw = (run / "round_1" / "trees.jsonl.gz").read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])


def _bad_json_line_3(run, path):
    lines = _plain_lines(run)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"
    path.write_text("".join(lines))


def _missing_key_line_2(run, path):
    lines = _plain_lines(run)
    record = json.loads(lines[1])
    del record["spans"]
    lines[1] = json.dumps(record) + "\n"
    path.write_text("".join(lines))


def _short_column_line_4(run, path):
    lines = _plain_lines(run)
    record = json.loads(lines[3])
    record["floats"]["prior"] = record["floats"]["prior"][:-1]
    lines[3] = json.dumps(record) + "\n"
    path.write_text("".join(lines))


def _cut_last_line(run, path):
    text = "".join(_plain_lines(run))
    path.write_text(text[: len(text) - 200])


@pytest.mark.parametrize("name, make, line, words", [
    ("trees.jsonl.gz", _truncated_gzip, None, "truncated or corrupt gzip"),
    ("trees.jsonl", _bad_json_line_3, 3, "not a JSON record"),
    ("trees.jsonl", _missing_key_line_2, 2, "spans"),
    ("trees.jsonl", _short_column_line_4, 4, "prior"),
    ("trees.jsonl", _cut_last_line, 6, "truncated file"),
])
def test_malformed_trees_file_is_named_and_no_html_is_written(run, tmp_path, name, make,
                                                              line, words):
    bad = tmp_path / name
    make(run, bad)
    out = tmp_path / "page.html"
    with pytest.raises(TreeFileError) as err:
        write_view(bad, out)
    assert err.value.path == str(bad) and words in str(err.value)
    if line is not None:
        assert err.value.line == line and f"line {line}:" in str(err.value)
    else:  # a gzip stream cut short: the line it breaks in, past the complete ones
        assert err.value.line is not None and 1 <= err.value.line <= 6
    assert not out.exists()


def test_cli_names_a_malformed_file_and_writes_nothing(run, tmp_path):
    bad = tmp_path / "trees.jsonl"
    _bad_json_line_3(run, bad)
    out = tmp_path / "page.html"
    proc = _cli("-m", "treesearch.view", str(bad), "--out", str(out))
    assert proc.returncode == 2
    assert f"error: {bad}: line 3: not a JSON record" in proc.stderr
    assert not out.exists()


def test_empty_trees_file_is_named(tmp_path):
    empty = tmp_path / "trees.jsonl"
    empty.write_text("")
    with pytest.raises(TreeFileError, match="no trees"):
        write_view(empty, tmp_path / "page.html")
    assert not (tmp_path / "page.html").exists()


def test_corrupt_round_in_a_run_is_named(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("policy", "critics"))
    shutil.copytree(run / "round_1" / "policy", copy / "round_1" / "policy")
    _truncated_gzip(run, copy / "round_1" / "trees.jsonl.gz")
    report = copy / "report.html"  # self-play wrote one at the end of the run
    before = report.read_bytes() if report.exists() else None
    with pytest.raises(TreeFileError, match="round_1/trees.jsonl.gz: line"):
        write_report(copy)
    assert (report.read_bytes() if report.exists() else None) == before  # left as it was


# -- escaping -------------------------------------------------------------------------------
HOSTILE = '</script><script>window.pwned=1</script><img src="x" onerror="window.pwned=2">&amp;<!--'


def test_embedded_json_cannot_close_its_script():
    text = embed_json({"text": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"text": HOSTILE}


def test_model_text_is_shown_as_text(browser, data, tmp_path):
    """Step text is model output: a step that spells markup shows as those characters."""
    hostile = json.loads(json.dumps(data))
    problem = hostile["rounds"][0]["problems"][0]
    problem["columns"]["text"][1] = HOSTILE
    problem["question"] = HOSTILE
    page_file = write_html(hostile, tmp_path / "hostile.html")
    assert HOSTILE not in page_file.read_text()
    page = Page(browser, page_file)
    page.click_node(problem["columns"]["node"][1])
    assert page.tab.text_content("#details pre.step") == HOSTILE
    assert HOSTILE in page.tab.text_content("#problem-head")
    assert page.tab.evaluate("window.pwned") is None
    page.close_clean()


# -- the page in a browser ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(run) -> Path:
    return write_report(run)


def test_report_draws_every_tree_and_highlights_the_chosen_path(browser, report, forest, data,
                                                                tmp_path):
    assert report == report.parent / "report.html" and report.parent.name == "run"
    page = Page(browser, report)
    problems = data["rounds"][0]["problems"]
    for b, problem in enumerate(problems):
        page.select_problem(b)
        page.tab.wait_for_function(f"document.querySelector('#problem-list tr.active')"
                                   f".getAttribute('data-index') === '{b}'")
        drawn = page.drawn_nodes()
        assert sorted(drawn) == sorted(to_networkx(forest, b).nodes)
        chosen = problem["columns"]["node"][problem["chosen"]]
        # the highlighted nodes are exactly the root-to-chosen path, ending at the chosen node
        assert sorted(page.nodes_with("onpath")) == sorted(node_path(forest, b, chosen))
        assert page.nodes_with("chosen") == [chosen]
        assert page.tab.get_attribute("#chosen-path", "data-end") == str(chosen)
        if problem["answer"] is not None:
            assert chosen in page.nodes_with("answer")
            mark = "right" if problem["solved"] else "wrong"
            assert chosen in page.nodes_with(mark)
    page.tab.screenshot(path=str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    charts = page.tab.locator("#charts .chart").count()
    assert charts >= 4  # accuracy, training search, calibration, skill (+ reliability)
    page.close_clean()


def test_clicking_a_node_shows_its_step_and_critic_parts(browser, report, run, forest, data):
    tok = _tokenizer(run)
    page = Page(browser, report)
    problem = data["rounds"][0]["problems"][0]
    # an inner step (value critic) and an answer (the verifier in the ORM slot)
    inner = next(int(n) for n in _live(forest, 0)[1:] if not forest.terminal[0, n])
    answer = next(int(n) for n in _live(forest, 0)[1:] if forest.terminal[0, n])
    for node, part in [(inner, "c_value"), (answer, "c_outcome")]:
        page.click_node(node)
        step = tok.decode(forest.tokens.get(int(forest.payload[0, node])).tolist(),
                          skip_special_tokens=True)
        assert page.tab.text_content("#details pre.step") == step
        value = float(forest.extra(part)[0, node])
        assert np.isfinite(value)
        shown = page.tab.text_content(f'#details tr[data-key="{part}"] td:last-child')
        assert float(shown) == pytest.approx(value, abs=6e-4)
        visits = page.tab.text_content('#details tr[data-key="visits"] td:last-child')
        assert int(visits) == int(forest.visits[0, node])
        path = page.tab.eval_on_selector_all("#details ol.path li pre",
                                             "ps => ps.map(p => p.textContent)")
        steps = [tok.decode(forest.tokens.get(int(forest.payload[0, n])).tolist(),
                            skip_special_tokens=True) for n in node_path(forest, 0, node)[1:]]
        assert path == [problem["question"], *steps]
    page.close_clean()


def test_colour_switch_recolours_by_a_critic_part(browser, report):
    page = Page(browser, report)
    before = page.tab.eval_on_selector_all("#nodes circle",
                                           "cs => cs.map(c => c.getAttribute('fill'))")
    page.tab.select_option("#colour", "c_outcome")
    after = page.tab.eval_on_selector_all("#nodes circle",
                                          "cs => cs.map(c => c.getAttribute('fill'))")
    assert before != after and len(before) == len(after)
    page.close_clean()


def test_large_trees_open_collapsed_below_a_depth(browser, data, forest, tmp_path):
    """Past the node limit a tree opens collapsed below the deepest depth that fits (the
    chosen path stays open); 'expand all' draws every node."""
    small = {**data, "limit": 4}
    page_file = write_html(small, tmp_path / "limit.html")
    page = Page(browser, page_file)
    problems = data["rounds"][0]["problems"]
    b = max(range(len(problems)), key=lambda i: problems[i]["n"])
    page.select_problem(b)
    problem = problems[b]
    cols = problem["columns"]
    depth = int(page.tab.input_value("#depth"))
    drawn = page.drawn_nodes()
    assert len(drawn) < problem["n"]
    row = {n: i for i, n in enumerate(cols["node"])}
    chosen = cols["node"][problem["chosen"]]
    on_path = set(node_path(forest, b, chosen))
    for n in drawn:  # drawn: every parent above the depth, or on the chosen path
        parent = int(forest.parent[b, n])
        assert parent < 0 or cols["depth"][row[parent]] < depth or parent in on_path
    assert on_path <= set(drawn)
    page.tab.click("#expand-all")
    assert sorted(page.drawn_nodes()) == sorted(cols["node"])
    page.close_clean()


def test_decode_result_shows_its_charts(browser, tmp_path):
    """A decode result (``python -m treesearch.decode``'s decode.json) has no trees: the
    page says so and draws accuracy against tokens per strategy."""
    rows = [{"strategy": "greedy", "budget": None, "tokens": 34.8, "accuracy": 0.22,
             "table": "learned"},
            {"strategy": "mcts", "budget": 256, "tokens": 230.1, "accuracy": 0.23,
             "table": "learned"},
            {"strategy": "mcts", "budget": 512, "tokens": 470.0, "accuracy": 0.25,
             "table": "learned"},
            {"strategy": "majority", "budget": 256, "tokens": 250.2, "accuracy": 0.23,
             "table": "learned"},
            {"strategy": "majority", "budget": 512, "tokens": 505.9, "accuracy": 0.24,
             "table": "learned"}]
    result = tmp_path / "decode" / "decode.json"
    result.parent.mkdir()
    result.write_text(json.dumps({"args": {"task": "countdown3"}, "rows": rows}))
    out = write_view(result.parent)
    assert out == result.parent / "decode.html"
    page = Page(browser, out)
    assert "No search trees" in page.tab.text_content("#problem-head")
    assert page.tab.locator("#charts .chart").count() == 1
    # a line for each strategy with two budgets (greedy is one point), a dot per row
    assert page.tab.locator("#charts .chart svg path").count() == 2
    assert page.tab.locator("#charts .chart svg circle").count() == len(rows)
    page.close_clean()
    result.write_text("{not json")
    with pytest.raises(ViewError, match="decode.json: not a JSON decode result"):
        write_view(result, tmp_path / "x.html")


def test_built_page_is_self_contained(data):
    html = build_html(data)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", html)
    (csp,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert unescape(csp).startswith("default-src 'none'; script-src 'sha256-")
