"""critics.calibration: Brier, ECE, AUROC, reliability bins and the diagram PNG."""

import math

import numpy as np
import pytest

from critics.calibration import (
    auroc,
    brier,
    calibration_report,
    ece,
    reliability_bins,
    reliability_diagram,
)


def test_brier_small_arrays():
    assert brier([1.0, 0.0], [1, 0]) == 0.0
    assert brier([0.0, 1.0], [1, 0]) == 1.0
    # (0.8-1)^2 + (0.4-0)^2 + (0.5-1)^2 = 0.04 + 0.16 + 0.25 = 0.45, over 3
    assert brier([0.8, 0.4, 0.5], [1, 0, 1]) == pytest.approx(0.15)


def test_ece_hand_made_bins():
    p = [0.05, 0.15, 0.12, 0.65, 0.7, 1.0, 0.95]
    y = [0, 1, 0, 1, 1, 1, 0]
    # bins=10: [0.0,0.1): {0.05 -> y 0}; [0.1,0.2): {0.15, 0.12 -> y 1, 0};
    # [0.6,0.7): {0.65 -> 1}; [0.7,0.8): {0.7 -> 1} (left edge is inclusive);
    # [0.9,1.0]: {1.0, 0.95 -> 1, 0} (last bin closed)
    expected = (1 / 7 * abs(0.05 - 0) + 2 / 7 * abs(0.135 - 0.5) + 1 / 7 * abs(0.65 - 1)
                + 1 / 7 * abs(0.7 - 1) + 2 / 7 * abs(0.975 - 0.5))
    assert ece(p, y) == pytest.approx(expected)
    b = reliability_bins(p, y)
    assert b.count.tolist() == [1, 2, 0, 0, 0, 0, 1, 1, 0, 2]
    assert b.confidence[1] == pytest.approx(0.135) and b.frequency[9] == 0.5
    assert np.isnan(b.confidence[2]) and np.isnan(b.frequency[8])
    # two bins: [0, .5) {.05 .15 .12 -> 0 1 0}, [.5, 1] {.65 .7 1 .95 -> 1 1 1 0}
    two = 3 / 7 * abs(0.32 / 3 - 1 / 3) + 4 / 7 * abs(3.3 / 4 - 3 / 4)
    assert ece(p, y, bins=2) == pytest.approx(two)
    assert ece([0.3, 0.3, 0.8], [0, 1, 1]) == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.2)


def brute_force_auroc(p, y):
    pos, neg = p[y == 1], p[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


def test_auroc_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    for n in (2, 7, 50, 301):
        p = rng.integers(0, 6, n) / 5.0  # six distinct values: many ties
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1
        assert auroc(p, y) == pytest.approx(brute_force_auroc(p, y), abs=1e-12)
    p = rng.random(200)
    y = (rng.random(200) < p).astype(int)
    assert auroc(p, y) == pytest.approx(brute_force_auroc(p, y), abs=1e-12)


def test_auroc_perfect_reversed_one_class():
    assert auroc([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.6, 0.4, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert math.isnan(auroc([0.2, 0.7], [1, 1]))
    assert math.isnan(auroc([0.2], [0]))


@pytest.mark.parametrize("p, y, words", [
    ([0.5, 0.5], [1], "2 predictions but y has 1"),
    ([0.5, float("nan")], [1, 0], "non-finite"),
    ([0.5, float("inf")], [1, 0], "non-finite"),
    ([0.5, 1.2], [1, 0], "[0, 1]"),
    ([-0.1, 0.5], [1, 0], "[0, 1]"),
    ([0.5, 0.5], [1, 2], "binary"),
    ([0.5, 0.5], [0.5, 1], "binary"),
    ([0.5, 0.5], ["a", "b"], "binary"),
    ([[0.5]], [1], "1-D"),
    ([], [], "N = 0"),
])
def test_bad_inputs_raise(p, y, words):
    for fn in (brier, ece, auroc, calibration_report):
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            fn(p, y)
    with pytest.raises(ValueError, match="bins"):
        ece([0.5], [1], bins=0)


def test_report_and_diagram_png(tmp_path):
    p = np.array([0.1, 0.2, 0.8, 0.9, 0.9, 0.4])
    y = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    report = calibration_report(p, y, bins=5)
    assert report["n"] == 6 and report["positives"] == 3
    assert report["brier"] == brier(p, y) and report["ece"] == ece(p, y, 5)
    assert report["auroc"] == auroc(p, y)
    assert report["bins"]["count"] == [1, 1, 1, 0, 3] and len(report["bins"]["edges"]) == 6

    out = reliability_diagram(p, y, tmp_path / "rel.png", title="test critic", bins=5)
    assert out == tmp_path / "rel.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["rel.png"]  # no temp file left
