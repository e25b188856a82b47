"""Property test of every command line: random bad input is refused.

For each CLI (self-play, decode, the study, the viewer, pretraining) ``CASES`` random
command lines, drawn from a fixed-seed generator over the schema's keys (the config
dataclasses of ``treesearch.config``, ``treesearch.study.config``, ``SearchConfig``,
``DistributedConfig``, ``PretrainConfig``), each holding at least one thing that cannot
work: an unknown key, a value of the wrong type, a number out of range or not finite, a
key the app sets itself, an override or a config file that is not YAML. Around it, noise:
other keys set to values that may or may not be valid. Every case must exit with status 2
and print exactly one line, ``error: ...``, on stderr (never a traceback), before any model
work (the entry points of the work are replaced by a tripwire) and without leaving a run
directory (or an HTML page) behind.

Each case calls the CLI's ``main(argv)`` in this process, so a case costs milliseconds.
"""

from __future__ import annotations

import random
import traceback

import pytest

pytest.importorskip("torch")

from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode  # noqa: E402

from policies import pretrain  # noqa: E402
from policies.pretrain import PretrainConfig  # noqa: E402
from treesearch import decode  # noqa: E402
from treesearch.config import SelfPlayConfig  # noqa: E402
from treesearch.distributed import DistributedConfig  # noqa: E402
from treesearch.search import SearchConfig  # noqa: E402
from treesearch.selfplay import run as selfplay  # noqa: E402
from treesearch.study import run as study  # noqa: E402
from treesearch.study.config import StudyConfig  # noqa: E402
from treesearch.view import __main__ as view  # noqa: E402

CASES = 500
SEED = 34


class ReachedWork(BaseException):
    """The tripwire: a case got past every check to the work itself (not an Exception,
    so no refusal handler swallows it)."""


def _tripwire(*args, **kwargs):
    raise ReachedWork("reached the work: the input was not refused first")


# ------------------------------------------------------------------------- the schema

def leaves(schema) -> dict[str, str]:
    """{dotted key: kind} of every leaf of a structured config: int, float, bool, str,
    dict (a free-form mapping), list, missing (a field the app sets itself) or any."""
    out = {}

    def walk(node, prefix):
        for key in node:
            name = f"{prefix}{key}"
            if OmegaConf.is_missing(node, key):
                out[name] = "missing"
                continue
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                if OmegaConf.get_type(child) is dict:
                    out[name] = "dict"
                else:
                    walk(child, f"{name}.")
            elif isinstance(child, ListConfig):
                out[name] = "list"
            else:
                kinds = ((BooleanNode, "bool"), (IntegerNode, "int"), (FloatNode, "float"),
                         (StringNode, "str"))
                out[name] = next((k for cls, k in kinds if isinstance(child, cls)), "any")

    walk(OmegaConf.structured(schema), "")
    return out


# values of the wrong type for a kind: refused whatever else the line holds
WRONG = {"int": ["abc", "[1, 2]", "{a: 1}", "1.5", "'x y'"],
         "float": ["abc", "[1.0]", "{a: 1}", "'x y'"],
         "bool": ["maybe", "[true]", "{a: 1}", "2", "abc"],
         "str": ["[1, 2]", "{a: b}"],
         "dict": ["5", "abc", "[1, 2]"],
         "list": ["5", "abc", "{a: 1}"]}
NOT_FINITE = ["nan", "inf", "-inf", ".nan", "-.inf", "1e999"]
# override values that are not YAML (or not resolvable)
NOT_YAML = ["[", "{a", "[1,", "]", "${nope}", "${", "'", '"', "{a: [}", "${oc.env:NOPE_ZZ}"]
# items that are not KEY=VALUE overrides at all
NOT_ITEMS = ["=1", "noequals", ".x=1", "x..y=1", "x.=1", "[1]=2"]
# config files that cannot be used
BROKEN_FILES = ["a: [\n", "rounds: 1\n  indented: 2\n", "- 1\n- 2\n", "42\n", "x: {{\n",
                "\t- x\n", "key: 'unclosed\n", "zz_unknown: 1\n", "extends: no_such_recipe\n",
                "a: 1\na: 2\n", "? [1, 2]\n: 3\n", "!!python/object:os.system {}\n",
                "task: ${nope}\n"]
# noise: values tried on any key (some valid for some keys, most not)
NOISE = ["0", "-1", "1", "2", "3", "1000000000", "-1000000000", "0.5", "-0.5", "true",
         "false", "null", "''", "abc", "[]", "{}", "[1, 2]", "nan", "1e-9"]


class Fuzz:
    """Draws the items of one command line from ``rng``: ``bad()`` one item that cannot
    work, ``noise()`` items that may or may not (never on the bad item's key)."""

    def __init__(self, rng: random.Random, kinds: dict[str, str], out_of_range: dict,
                 prefix: str = "", skip=()):
        self.rng, self.prefix = rng, prefix
        self.kinds = {k: v for k, v in kinds.items() if k not in skip}
        self.out_of_range = out_of_range
        self.sections = sorted({k.rsplit(".", 1)[0] for k in self.kinds if "." in k})

    def _key(self, kinds=None) -> str:
        keys = [k for k, v in self.kinds.items() if kinds is None or v in kinds]
        return self.rng.choice(sorted(keys))

    def bad(self) -> tuple[str, str]:
        """(item, its key): one override that must be refused."""
        rng, p = self.rng, self.prefix
        what = rng.choice(["unknown", "wrong", "not_finite", "range", "not_yaml", "not_item",
                           "missing"])
        if what == "unknown":
            key = rng.choice([f"zz{rng.randrange(99)}",
                              f"{rng.choice(self.sections or ['zz'])}.zz{rng.randrange(99)}",
                              f"{self._key(('int', 'float', 'bool', 'str'))}.zz"])
            return f"{p}{key}={rng.choice(NOISE)}", key
        if what == "wrong":
            key = self._key(WRONG)
            return f"{p}{key}={rng.choice(WRONG[self.kinds[key]])}", key
        if what == "not_finite" and "float" in self.kinds.values():
            key = self._key(("float",))
            return f"{p}{key}={rng.choice(NOT_FINITE)}", key
        if what == "missing" and "missing" in self.kinds.values():
            key = self._key(("missing",))
            return f"{p}{key}={rng.choice(['1', 'abc', 'true'])}", key
        if what == "not_item":
            return p + rng.choice(NOT_ITEMS), ""
        if what == "not_yaml":
            key = self._key()
            return f"{p}{key}={rng.choice(NOT_YAML)}", key
        key = rng.choice(sorted(self.out_of_range))
        return f"{p}{key}={rng.choice(self.out_of_range[key])}", key

    def noise(self, avoid: str, most: int = 3) -> list[str]:
        items = []
        for _ in range(self.rng.randrange(most + 1)):
            key = self._key()
            if key != avoid and not key.startswith(f"{avoid}.") and not avoid.startswith(key):
                items.append(f"{self.prefix}{key}={self.rng.choice(NOISE)}")
        return items

    def line(self) -> list[str]:
        """A shuffled list of overrides holding one bad item."""
        item, key = self.bad()
        items = [item] + self.noise(key)
        self.rng.shuffle(items)
        return items


def _ranges(bad_ints: str, bad_floats: str, bad_names: str, extra=None) -> dict:
    """{key: out-of-range values}: keys that must be >= 1, floats that must be > 0 (or in
    a range), names that must be one of a list."""
    out = {k: ["0", "-1", "-1000000000"] for k in bad_ints.split()}
    out.update({k: ["-1.0", "-0.5"] for k in bad_floats.split()})
    out.update({k: ["zz_bad", "''"] for k in bad_names.split()})
    out.update(extra or {})
    return out


SEARCH_RANGES = _ranges(
    "simulations branching horizon max_children max_depth max_step_tokens max_tokens",
    "widen_c c_explore prior_temperature", "rule first_play_mode answer",
    {"gamma": ["1.5", "-1.0"], "early_stop_score": ["2", "-0.5"], "prune_below": ["1.5", "-1"],
     "widen_alpha": ["1.5", "-1"]})
DISTRIBUTED_RANGES = _ranges("workers", "num_cpus num_gpus", "backend address",
                             {"shard_problems": ["-1"], "retries": ["-3"]})


def _under(prefix: str, table: dict) -> dict:
    return {f"{prefix}{k}": v for k, v in table.items()}


SELFPLAY_RANGES = {
    **_ranges("rounds train_problems policy.threads critics.max_examples distill.epochs "
              "distill.batch_size eval.problems eval.samples eval.mcts_budget",
              "policy.temperature critics.lr critics.weights.value distill.lr "
              "distill.unlikeliness distill.prior_weight",
              "task policy.model policy.backend critics.value critics.outcome critics.judge "
              "critics.train_outcome distill.method distill.tree_baseline eval.split "
              "task_options.prompt_style",
              {"policy.top_p": ["0", "1.5"], "task_options.shots": ["-1"],
               "distill.lora_dropout": ["1.5"], "eval.passk_samples": ["-1"]}),
    **_under("search.", SEARCH_RANGES), **_under("distributed.", DISTRIBUTED_RANGES)}
STUDY_RANGES = {
    **_ranges("budget_tokens train_problems threads rl.group_size rl.problems_per_step "
              "tree.sft.epochs tree.dpo.batch_size eval.problems eval.samples",
              "rl.lr rl.grad_clip eval.temperature tree.sft.lr tree.dpo.dpo_beta",
              "task rl.reward rl.zero_success rl.curriculum eval.split eval.heldout_strategy",
              {"seeds": ["[]"], "optimizers": ["[]", "[zz_bad]"], "priors": ["[]"],
               "ood_tasks": ["[zz_bad]"], "rl.passk": ["0", "99"], "eval.ood_problems": ["-1"]}),
    **_under("search.", SEARCH_RANGES), **_under("distributed.", DISTRIBUTED_RANGES)}


# ------------------------------------------------------------------------- running

def outcome(main, argv, capsys) -> tuple[object, str]:
    """(exit status, stderr) of ``main(argv)``; a crash's status is its traceback."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    except BaseException:  # noqa: BLE001 (a crash is what the test looks for)
        rc = "crash: " + traceback.format_exc(limit=6)
    return rc, capsys.readouterr().err


def refused(rc, err: str) -> str | None:
    """None when the case was refused properly, else what was wrong."""
    lines = [line for line in err.splitlines() if line.strip()]
    if isinstance(rc, str):
        return rc
    if rc != 2:
        return f"exit status {rc!r} (expected 2); stderr {err!r}"
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"stderr is not one 'error: ' line: {err!r}"
    return None


def check(failures: list[str], n: int) -> None:
    shown = "\n\n".join(failures[:8])
    assert not failures, f"{len(failures)} of {n} cases were not refused properly:\n{shown}"


def broken_file(rng: random.Random, folder, good: str = "") -> str:
    """A config file that cannot be used: not YAML, or YAML no schema takes."""
    path = folder / f"bad{rng.randrange(10**6)}.yaml"
    path.write_text(good + rng.choice(BROKEN_FILES), encoding="utf-8")
    return str(path)


def files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture()
def inputs(tmp_path):
    """Inputs the cases point at: broken run directories and files (made before the
    cases, so the check for files left behind does not count them)."""
    folder = tmp_path / "inputs"
    (folder / "run_bad_config").mkdir(parents=True)
    (folder / "run_bad_config" / "config.yaml").write_text("rounds: [\n")
    (folder / "run_bad_config" / "state.json").write_text('{"done": []}')
    (folder / "run_bad_state").mkdir()
    (folder / "run_bad_state" / "config.yaml").write_text("rounds: 1\n")
    (folder / "run_bad_state" / "state.json").write_text("{not json")
    (folder / "run_no_trees").mkdir()
    (folder / "run_no_trees" / "config.yaml").write_text("rounds: 1\n")
    (folder / "run_bad_task").mkdir()
    (folder / "run_bad_task" / "config.yaml").write_text("task: nope\n")
    (folder / "run_bad_task" / "state.json").write_text('{"done": []}')
    (folder / "empty_dir").mkdir()
    (folder / "trees.jsonl").write_text("{not json\n")
    (folder / "trees.jsonl.gz").write_bytes(b"\x1f\x8b not gzip")
    (folder / "empty.jsonl").write_text("")
    (folder / "decode.json").write_text("[1, 2")
    (folder / "list.json").write_text("[1, 2]")
    (folder / "notes.txt").write_text("hello")
    (folder / "bad_task.yaml").write_text("task: nope\n")
    (folder / "wrong_type.yaml").write_text("rounds: abc\n")
    return folder


def run_dirs(folder) -> list[str]:
    return [str(folder / n) for n in ("run_bad_config", "run_bad_state", "run_no_trees",
                                      "run_bad_task", "empty_dir", "no_such_dir")]


def fuzz_cli(main, cases, capsys, tmp_path, monkeypatch) -> None:
    """Run every case in an empty working directory; fail listing the cases that were
    not refused with status 2 and one error line, or that left a file behind."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = files_under(tmp_path)
    failures = []
    for argv in cases:
        rc, err = outcome(main, argv, capsys)
        why = refused(rc, err)
        left = files_under(tmp_path) - before
        if why is None and left:
            why = f"left files behind: {sorted(left)[:4]}"
        if why is not None:
            failures.append(f"{argv}: {why}")
    check(failures, len(cases))


# ------------------------------------------------------------------------- self-play

def selfplay_cases(rng: random.Random, tmp_path, inputs) -> list[list[str]]:
    fz = Fuzz(rng, leaves(SelfPlayConfig), SELFPLAY_RANGES)
    out = f"out={tmp_path / 'run'}"
    cases = []
    for _ in range(CASES):
        kind = rng.random()
        if kind < 0.7:
            cases.append([out, *fz.line()])
        elif kind < 0.8:
            cases.append(["--config", broken_file(rng, inputs), out, *fz.noise("")])
        elif kind < 0.85:
            cases.append(["--config", rng.choice([str(inputs / "nope.yaml"), "no_such_recipe",
                                                  str(inputs / "bad_task.yaml"),
                                                  str(inputs / "wrong_type.yaml"),
                                                  str(inputs)]), out])
        elif kind < 0.95:
            extra = rng.choice([[], [], ["rounds=2"], ["--config", "default"]])
            cases.append(["--resume", rng.choice(run_dirs(inputs)), *extra])
        else:
            cases.append(rng.choice([["--bogus"], ["--config"], ["--resume"], [out, "-x"]]))
    return cases


def test_selfplay_refuses_random_bad_input(capsys, tmp_path, monkeypatch, inputs):
    monkeypatch.setattr(selfplay, "SelfPlay", _tripwire)
    monkeypatch.setattr(selfplay.RunDir, "create", _tripwire)
    cases = selfplay_cases(random.Random(SEED), tmp_path, inputs)
    fuzz_cli(selfplay.main, cases, capsys, tmp_path, monkeypatch)


# ------------------------------------------------------------------------- the study

def study_cases(rng: random.Random, tmp_path, inputs) -> list[list[str]]:
    fz = Fuzz(rng, leaves(StudyConfig), STUDY_RANGES)
    out = f"out={tmp_path / 'study'}"
    cases = []
    for _ in range(CASES):
        kind = rng.random()
        if kind < 0.75:
            cases.append(["--quick", out, *fz.line()])
        elif kind < 0.85:
            cases.append(["--config", broken_file(rng, inputs), out, *fz.noise("")])
        elif kind < 0.95:
            extra = rng.choice([[], ["seeds=[0]"], ["--quick"]])
            cases.append(["--resume", rng.choice(run_dirs(inputs)), *extra])
        else:
            cases.append(rng.choice([["--bogus"], [out], ["--quick", "--config", "study"],
                                     ["--config", str(inputs / "nope.yaml")]]))
    return cases


def test_study_refuses_random_bad_input(capsys, tmp_path, monkeypatch, inputs):
    monkeypatch.setattr(study, "Study", _tripwire)
    monkeypatch.setattr(study.RunDir, "create", _tripwire)
    cases = study_cases(random.Random(SEED + 1), tmp_path, inputs)
    fuzz_cli(study.main, cases, capsys, tmp_path, monkeypatch)


# ------------------------------------------------------------------------- decode

# flag: (values that may work, values that cannot)
DECODE_FLAGS = {
    "--problems": (["1", "2"], ["abc", "0", "-3", "1.5", ""]),
    "--budgets": (["256", "1024"], ["abc", "0", "-5", "3"]),
    "--threads": (["1"], ["0", "-2", "abc"]),
    "--temperature": (["0.7", "1.0"], ["abc", "nan", "inf", "-1", "0"]),
    "--seed": (["0", "3"], ["abc", "1.5"]),
    "--split": (["val", "test"], ["train", "abc"]),
    "--strategies": (["greedy", "sample"], ["bogus", "MCTS"]),
    "--judge": (["plain"], ["bogus"]),
    "--value": (["none"], ["bogus", "head:", "head:/no/such/dir", "oracle", "generative",
                           "checker", "verifier", "none:x"]),
    "--process": (["none"], ["bogus", "head:/no/such/dir", "oracle", "head"]),
    "--outcome": (["none"], ["bogus", "generative:/no/such/dir", "oracle", "head"]),
    "--task": ([], ["nope", "rg:nope", "no_module_here:make", "rg:", ""]),
    "--model": ([], ["/no/such/dir", "nope", ""]),
}


def bad_flag_item(rng: random.Random, flags: dict) -> tuple[str, list[str]]:
    """One flag of ``flags`` (flag -> (good values, bad values)) with one of its bad values:
    (the flag, [flag, value])."""
    flag = rng.choice(sorted(flags))
    return flag, [flag, rng.choice(flags[flag][1])]


def good_flag_items(rng: random.Random, flags: dict, skip: str) -> list[list[str]]:
    """Up to three other flags of ``flags`` (not ``skip``), each [flag, a good value]."""
    return [[flag, rng.choice(flags[flag][0])]
            for flag in rng.sample(sorted(flags), rng.randrange(4))
            if flag != skip and flags[flag][0]]


def decode_cases(rng: random.Random, tmp_path, inputs) -> list[list[str]]:
    search = Fuzz(rng, leaves(SearchConfig), SEARCH_RANGES, prefix="search.")
    dist = Fuzz(rng, leaves(DistributedConfig), DISTRIBUTED_RANGES, prefix="distributed.")
    cases = []
    for _ in range(CASES):
        kind = rng.random()
        bad_flag = ""
        if kind < 0.4:
            bad_flag, bad = bad_flag_item(rng, DECODE_FLAGS)
        elif kind < 0.65:
            bad = search.line()
        elif kind < 0.8:
            bad = dist.line()
        elif kind < 0.88:
            bad = [rng.choice(["task_args.zz=1", "task_args.n_numbers=[", "task_args.=1",
                               "task_args.n_numbers=abc", "task_args.n_numbers=-1",
                               "task_args", "zz=1"])]
        elif kind < 0.96:
            bad = ["--config", rng.choice([broken_file(rng, inputs, "task: countdown3\n"),
                                           str(inputs / "nope.yaml"),
                                           str(inputs / "bad_task.yaml")])]
        else:
            bad = rng.choice([["--bogus"], ["--problems"], ["--budgets"]])
        noise = search.noise("", most=2)
        items = [bad, *good_flag_items(rng, DECODE_FLAGS, bad_flag),
                 *[noise[i:i + 2] for i in range(0, len(noise), 2)]]
        rng.shuffle(items)
        base = ["--out", str(tmp_path / "d"), "--problems", "2"]  # few problems: fast cases
        cases.append(base + [a for item in items for a in item])
    return cases


def test_decode_refuses_random_bad_input(capsys, tmp_path, monkeypatch, inputs):
    monkeypatch.setattr(decode, "build_policy", _tripwire)
    monkeypatch.setattr(decode, "evaluate_shards", _tripwire)
    cases = decode_cases(random.Random(SEED + 2), tmp_path, inputs)
    fuzz_cli(decode.main, cases, capsys, tmp_path, monkeypatch)


# ------------------------------------------------------------------------- the viewer

def view_flags(run, tmp_path, inputs, kind: str) -> dict[str, tuple[list[str], list[str]]]:
    """flag: (values that work, values that cannot) for a PATH of ``kind``: "run" (a real
    run directory, which brings its own recipe and model) or "trees" (its trees file
    outside the run, which may be handed a recipe or a model)."""
    outs = [str(tmp_path / "page.html"), str(tmp_path / "new" / "dir" / "p.html")]
    problems = (["#0", "#5"], ["zz", "#99", "#abc", "#-1", ""])
    if kind == "run":
        return {"--round": (["1"], ["abc", "-1", "0", "3", "1.5"]), "--problem": problems,
                "--out": (outs, []),
                "--config": ([], [str(run / "config.yaml"), "default",
                                  str(inputs / "bad_task.yaml")]),
                "--model": ([], ["tiny-countdown3", "nope"])}
    return {"--round": (["1"], ["abc", "-1", "2", "1.5"]), "--problem": problems,
            "--out": (outs, []),
            "--config": ([str(run / "config.yaml"), "default"],
                         [str(inputs / "bad_task.yaml"), str(inputs / "nope.yaml"),
                          str(inputs / "wrong_type.yaml")]),
            "--model": (["tiny-countdown3"], ["/no/such/dir", "nope"])}


def view_cases(rng: random.Random, tmp_path, inputs, run) -> list[list[str]]:
    """A third of the cases: a broken PATH (or none) among any flags; the rest: a real run
    or its trees file with exactly one bad flag value (or a broken --config file) among
    flags that work for that PATH, so the one bad item is what must be refused."""
    broken = run_dirs(inputs) + [str(inputs / n) for n in (
        "trees.jsonl", "trees.jsonl.gz", "empty.jsonl", "decode.json", "list.json",
        "notes.txt", "no_such.jsonl")] + [""]
    good_paths = {"run": str(run), "trees": str(run / "round_1" / "trees.jsonl.gz")}
    cases = []
    for _ in range(CASES):
        kind = rng.choice(["broken", "run", "trees"])
        flags = view_flags(run, tmp_path, inputs, "trees" if kind == "broken" else kind)
        if kind == "broken":
            argv = [rng.choice(broken)]
            for flag in rng.sample(sorted(flags), rng.randrange(4)):
                argv += [flag, rng.choice(sum(flags[flag], []))]
        else:
            bad_flags = {f: v for f, v in flags.items() if v[1]}
            if kind == "trees" and rng.random() < 0.2:
                bad_flag, bad = "--config", ["--config", broken_file(rng, inputs)]
            else:
                bad_flag, bad = bad_flag_item(rng, bad_flags)
            items = [bad, *good_flag_items(rng, flags, bad_flag)]
            rng.shuffle(items)
            argv = [good_paths[kind], *[x for item in items for x in item]]
        if rng.random() < 0.05:
            argv = rng.choice([[], ["--bogus"], argv + ["extra"], argv + ["--round"]])
        cases.append(argv)
    return cases


def test_view_refuses_random_bad_input(capsys, tmp_path, monkeypatch, inputs, tiny_run):
    monkeypatch.setattr("treesearch.view.report.write_html", _tripwire)
    cases = view_cases(random.Random(SEED + 3), tmp_path, inputs, tiny_run)
    assert sum(argv[:1] == [str(tiny_run)] for argv in cases) > CASES // 4
    fuzz_cli(view.main, cases, capsys, tmp_path, monkeypatch)


# ------------------------------------------------------------------------- pretraining

def pretrain_flags() -> dict[str, tuple[list[str], list[str]]]:
    """flag: (values that may work, values that cannot), from ``PretrainConfig``'s fields."""
    positive = {"hidden", "layers", "heads", "max_positions", "train_problems", "batch_size",
                "threads", "eval_samples", "eval_max_steps", "eval_max_step_tokens", "kv_heads",
                "intermediate", "steps", "tokens"}
    shares = {"flawed_share", "walk_share", "min_lr_ratio"}
    out = {}
    for f in PretrainConfig.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        if f.name in ("task_args", "out") or isinstance(f.default, bool):
            continue
        if f.type.startswith("int"):
            bad = ["abc", "1.5", "-1"] + (["0"] if f.name in positive else [])
            out[flag] = (["1", "2", "4", "64"], bad)
        elif f.type.startswith("float"):
            bad = ["abc", "nan", "-1", "inf"] + (["1.5"] if f.name in shares else [])
            out[flag] = (["0.1", "0.5"], bad)
        else:
            out[flag] = ([], ["zz_bad", ""])
    out["--task"] = (["countdown", "countdown3"], ["zz_bad", "rg:nope", "rg:leg_counting", ""])
    out["--time-budget-s"] = (["10"], ["0", "-1", "nan", "inf", "abc"])
    return out


def pretrain_cases(rng: random.Random, tmp_path) -> list[list[str]]:
    flags = pretrain_flags()
    cases = []
    for _ in range(CASES):
        kind = rng.random()
        bad_flag = ""
        if kind < 0.75:
            bad_flag, bad = bad_flag_item(rng, flags)
        elif kind < 0.9:
            bad = [rng.choice(["task_args.zz=1", "task_args.n_numbers=[", "task_args.=1",
                               "task_args.n_numbers=abc", "task_args.n_numbers=1", "oops",
                               "task_args.seed=3"])]
        else:
            bad = rng.choice([["--zz"], ["--hidden"], ["--progress=1"], ["--no-progress", "x"]])
        items = [bad, *good_flag_items(rng, flags, bad_flag)]
        rng.shuffle(items)
        cases.append(["--out", str(tmp_path / "p")] + [a for item in items for a in item])
    return cases


def test_pretrain_refuses_random_bad_input(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "pretrain", _tripwire)
    cases = pretrain_cases(random.Random(SEED + 4), tmp_path)
    fuzz_cli(pretrain.main, cases, capsys, tmp_path, monkeypatch)


# ------------------------------------------------------------------------- what it found

@pytest.mark.parametrize("argv,expected", [
    (["rounds=${nope}"], "cannot resolve it (Interpolation key 'nope' not found)"),
    (["distributed.address=${oc.env:NOPE_ZZ}"], "config key 'distributed.address' in"),
    (["distributed.num_gpus=1e999"], "config key 'distributed.num_gpus' = inf: must be a finite"),
    (["policy.temperature=nan"], "config key 'policy.temperature' = nan: must be a finite"),
    (["progress=2"], "bad value for config key 'progress' (command-line override 'progress=2')"
                     ": 2 is not true or false"),
    (["x..y=1"], "override 'x..y=1': 'x..y' is not a dotted config key"),
    (["--config"], "argument --config: expected one argument"),
    (["--resume", "somewhere", "rounds=2"], "--resume: takes no config or overrides"),
])
def test_selfplay_refusals_the_fuzz_found(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    rc, err = outcome(selfplay.main, argv, capsys)
    assert refused(rc, err) is None and expected in err, err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text,expected", [
    ("42\n", "is not a mapping of config keys"),
    ("- 1\n- 2\n", "is not a mapping of config keys (it holds a list)"),
    ("progress: 3\n", "bad value for config key 'progress'"),
    ("search:\n  merge: 0\n", "bad value for config key 'search.merge'"),
    ("task: ${nope}\n", "bad value for config key 'task'"),
])
def test_config_files_the_fuzz_found(capsys, tmp_path, text, expected):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    rc, err = outcome(selfplay.main, ["--config", str(path), f"out={tmp_path / 'run'}"], capsys)
    assert refused(rc, err) is None and expected in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv,expected", [
    (["--temperature", "nan"], "--temperature: must be a finite number > 0"),
    (["--temperature", "0"], "--temperature: must be a finite number > 0"),
    (["--value", "head:/no/such/dir"], "--value / --process / --outcome / --judge:"),
    (["--outcome", "head"], "--value / --process / --outcome / --judge: critics.outcome: "
                            "implementation 'head' needs a model"),
    (["--value", "checker"], "--value / --process / --outcome / --judge: Checker: there is no "
                             "label-free value checker"),
    (["--budgets", "-5"], "--budgets: decode: budget -5"),
])
def test_decode_refusals_before_any_model_the_fuzz_found(capsys, tmp_path, monkeypatch, argv,
                                                        expected):
    monkeypatch.setattr(decode, "build_policy", _tripwire)
    rc, err = outcome(decode.main, ["--problems", "2", "--strategies", "greedy", *argv,
                                    "--out", str(tmp_path / "d")], capsys)
    assert refused(rc, err) is None and err.startswith(f"error: {expected}"), err


def test_view_names_a_recipe_whose_task_cannot_be_built(capsys, tmp_path, inputs):
    for argv in ([str(inputs / "run_bad_task")],
                 [str(inputs / "trees.jsonl"), "--config", str(inputs / "bad_task.yaml")]):
        rc, err = outcome(view.main, argv, capsys)
        assert refused(rc, err) is None and "unknown task 'nope'" in err, err


def test_pretrain_refuses_an_endless_time_budget(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "pretrain", _tripwire)
    rc, err = outcome(pretrain.main, ["--time-budget-s", "inf", "--out", str(tmp_path / "p")],
                      capsys)
    assert refused(rc, err) is None and "--time-budget-s" in err, err
