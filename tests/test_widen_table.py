"""benchmarks/widen_table.py: arms grouped over seeds, round 0 against the last round."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import widen_table  # noqa: E402


def _run(path: Path, greedy: list[float], p64: list[float], passk: bool = True) -> Path:
    path.mkdir(parents=True)
    rows = []
    for r, (g, p) in enumerate(zip(greedy, p64)):
        row = {"round": r, "stage": "eval", "greedy": g, "distinct_correct": 5.0 + r,
               "entropy": 0.1}
        if passk:
            row["passk"] = {"1": g / 2, "8": p / 2, "64": p}
        rows += [row, {"round": r, "stage": "search", "train_solved": 0.5}]
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_arms_average_their_seeds_with_the_standard_error_of_the_change(tmp_path):
    runs = [_run(tmp_path / "default-s0", [0.2, 0.3], [0.8, 0.6]),
            _run(tmp_path / "default-s1", [0.2, 0.26], [0.8, 0.7]),
            _run(tmp_path / "wre-s0", [0.2, 0.21, 0.22], [0.8, 0.8, 0.82])]
    table = widen_table.summarise(runs)
    d = table["default"]
    assert d["seeds"] == [0, 1] and d["rounds"] == 1
    assert d["greedy"]["delta"] == pytest.approx(0.08)
    assert d["greedy"]["delta_se"] == pytest.approx(0.02)  # deltas 0.10, 0.06
    assert d["pass@64"]["last"] == pytest.approx(0.65)
    w = table["wre"]
    assert w["rounds"] == 2 and w["greedy"]["delta_se"] is None  # one seed: no error bar
    assert w["distinct_correct"]["delta"] == pytest.approx(2.0)
    text = widen_table.markdown(table)
    assert "| default | 2 |" in text and "+0.080 ± 0.020" in text
    assert str(tmp_path) not in json.dumps(table)  # names only, no machine paths


def test_a_run_without_passk_or_unfinished_is_named(tmp_path):
    with pytest.raises(ValueError, match="no pass@k curve"):
        widen_table.summarise([_run(tmp_path / "a-s0", [0.2, 0.3], [0.8, 0.6], passk=False)])
    with pytest.raises(ValueError, match="fewer than two eval rounds"):
        widen_table.summarise([_run(tmp_path / "b-s0", [0.2], [0.8])])
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        widen_table.summarise([tmp_path / "missing"])


def test_two_runs_of_one_seed_of_one_arm_are_refused(tmp_path):
    # "c" has no -s suffix, so it is seed 0 of arm "c", as "c-s0" is
    runs = [_run(tmp_path / "c", [0.2, 0.3], [0.8, 0.6]),
            _run(tmp_path / "c-s0", [0.2, 0.25], [0.8, 0.7])]
    with pytest.raises(ValueError, match="both are seed 0 of arm 'c'"):
        widen_table.summarise(runs)


def test_arms_paired_against_a_base_arm_by_seed_and_plotted(tmp_path):
    runs = [_run(tmp_path / "default-s0", [0.2, 0.3], [0.8, 0.6]),
            _run(tmp_path / "default-s1", [0.2, 0.26], [0.8, 0.7]),
            _run(tmp_path / "anchored-s0", [0.2, 0.28], [0.8, 0.78]),
            _run(tmp_path / "anchored-s1", [0.2, 0.27], [0.8, 0.74]),
            _run(tmp_path / "anchored-s2", [0.3, 0.9], [0.9, 0.1])]   # no partner: left out
    table = widen_table.summarise(runs)
    diffs = widen_table.against(table, "default")
    a = diffs["anchored"]
    assert a["seeds"] == [0, 1] and "default" not in diffs
    assert a["pass@64"]["diff"] == pytest.approx(0.11)        # +0.18 and +0.04
    assert a["pass@64"]["diff_se"] == pytest.approx(0.07)
    assert a["greedy"]["diff"] == pytest.approx(-0.005)
    assert table["anchored"]["passk"]["last"]["64"] == pytest.approx((0.78 + 0.74 + 0.1) / 3)
    assert "| anchored | 2 |" in widen_table.against_markdown(diffs, "default")
    with pytest.raises(ValueError, match="'nobody'"):
        widen_table.against(table, "nobody")
    with pytest.raises(ValueError, match="'nobody'"):
        widen_table.plot(table, tmp_path / "x.png", ["default", "nobody"])
    out = tmp_path / "out"
    assert widen_table.main([str(r) for r in runs] + [
        "--against", "default", "--png", str(out) + ".png", "--plot-arms", "anchored",
        "--json", str(out) + ".json"]) == 0
    assert (tmp_path / "out.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["against"]["base"] == "default" and "anchored" in saved["against"]["arms"]
    assert str(tmp_path) not in json.dumps(saved)


def test_the_plane_fits_the_line_and_measures_each_arm_off_it(tmp_path):
    """Three arms on the line pass@64 change = -2 x pass@1 change, one 0.05 above it, the
    last from an earlier table (--include): the fit, the offsets, the files."""
    def arm(name, d1, d64):  # pass@1 = greedy / 2 in _run; pass@64 from 0.8
        return _run(tmp_path / f"{name}-s0", [0.2, 0.2 + 2 * d1], [0.8, 0.8 + d64])

    runs = [arm("a", 0.00, 0.00), arm("b", 0.02, -0.04), arm("c", 0.04, -0.08)]
    table = widen_table.summarise(runs)
    pl = widen_table.plane(table, ["a", "b", "c"])
    assert pl["line"]["slope"] == pytest.approx(-2.0)
    assert pl["line"]["intercept"] == pytest.approx(0.0, abs=1e-9)
    stored = tmp_path / "earlier.json"
    assert widen_table.main([str(arm("d", 0.03, -0.01)), "--json", str(stored)]) == 0
    table = widen_table.include(table, stored)
    pl = widen_table.plane(table, ["a", "b", "c"])
    assert pl["arms"]["d"]["off"] == pytest.approx(0.05)        # -0.01 - (-0.06)
    assert pl["arms"]["b"]["off"] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(table["d"]["fell"]["delta"])  # logged neither: nan (stored as null)
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"arms": {"a": table["a"]}}))
    with pytest.raises(ValueError, match="arm 'a' is also among the runs"):
        widen_table.include(table, clash)
    with pytest.raises(ValueError, match="not a widen_table --json output"):
        widen_table.include(table, tmp_path / "missing.json")
    # a new seed of an included arm joins it: the stats are over all its seeds
    d1 = _run(tmp_path / "d-s1", [0.2, 0.2 + 2 * 0.01], [0.8, 0.8 + 0.03])
    merged = widen_table.include(widen_table.summarise([d1]), stored)["d"]
    assert merged["seeds"] == [0, 1]
    assert merged["pass@64"]["delta"] == pytest.approx(0.01)   # (-0.01 + 0.03) / 2
    assert merged["pass@64"]["delta_se"] == pytest.approx(0.02)
    with pytest.raises(ValueError, match=r"arm 'd' is also among the runs with seed\(s\) \[0\]"):
        widen_table.include(widen_table.summarise([tmp_path / "d-s0"]), stored)
    with pytest.raises(ValueError, match="'zz'"):
        widen_table.plane(table, ["a", "zz"])
    with pytest.raises(ValueError, match="a line needs two arms"):
        widen_table.plane(table, ["a"])
    out = tmp_path / "plane"
    assert widen_table.main([str(r) for r in runs] + [
        "--include", str(stored), "--line-arms", "a", "b", "c", "--plane", str(out) + ".png",
        "--default", "d", "--json", str(out) + ".json"]) == 0
    assert (tmp_path / "plane.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "plane.json").read_text())
    assert saved["plane"]["arms"]["d"]["off"] == pytest.approx(0.05)
    assert saved["default"] == "d"
    assert saved["runs"] == ["a-s0", "b-s0", "c-s0", "d-s0"]  # the included table's run too
    with pytest.raises(SystemExit):
        widen_table.main([str(runs[0]), "--default", "zz"])
    assert "off the line" in widen_table.plane_markdown(pl)
