"""treesearch.utils.estimators: pass@k against enumeration, coverage, eta squared, entropy."""

import ast
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from treesearch.utils.estimators import (
    coverage,
    default_ks,
    distinct_correct,
    eta_squared,
    mean_token_entropy,
    newly_solved,
    pass_at_k,
    pass_at_k_curve,
)

# ----------------------------------------------------------------------------- pass@k


def brute_pass_at_k(n, c, k):
    """Share of k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 11):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k),
                                                           abs=1e-12), (n, c, k)


def test_pass_at_k_edge_values():
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # only 2 wrong samples: every 3-subset has a correct
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert isinstance(pass_at_k(10, 3, 2), float)


def test_pass_at_k_vectorised_equals_scalar():
    rng = np.random.default_rng(0)
    n = rng.integers(5, 40, size=(3, 4))
    c = rng.integers(0, n + 1)
    got = pass_at_k(n, c, 5)
    assert got.shape == (3, 4) and got.dtype == np.float64
    for idx in np.ndindex(n.shape):
        assert got[idx] == pass_at_k(int(n[idx]), int(c[idx]), 5)


@pytest.mark.parametrize("n,c,k", [(1024, 3, 256), (1024, 1, 1), (10_000, 7, 9_000),
                                   (10_000, 2, 3), (1024, 1000, 20)])
def test_pass_at_k_large_n_matches_exact(n, c, k):
    got = pass_at_k(n, c, k)
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert math.isfinite(got) and 0.0 <= got <= 1.0
    assert abs(got - exact) <= 1e-12


def test_pass_at_k_tiny_value_is_accurate_relative():
    # 1 correct of 10_000, k=1: exactly 1e-4; the log form must not lose it to cancellation
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)


@pytest.mark.parametrize("args,word", [((10, -1, 2), "c"), ((10, 11, 2), "c"),
                                       ((10, 3, 0), "k"), ((10, 3, 11), "k"),
                                       ((10, 3, 2.5), "k")])
def test_pass_at_k_bad_arguments(args, word):
    with pytest.raises(ValueError, match=rf"\b{word}\b"):
        pass_at_k(*args)


def test_pass_at_k_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        pass_at_k(np.array([10, 10]), np.array([1, 2, 3]), 2)


def test_curve_mean_over_problems_and_monotone():
    counts = np.array([0, 1, 5, 16, 3])
    ks = default_ks(16)
    curve = pass_at_k_curve(counts, 16, ks)
    assert curve.shape == (len(ks),)
    expected = [np.mean([pass_at_k(16, c, k) for c in counts]) for k in ks]
    np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-15)
    assert np.all(np.diff(curve) >= 0)
    assert curve[-1] == pytest.approx(coverage(counts))  # pass@n is coverage


def test_curve_per_problem_n():
    counts, n = np.array([1, 2]), np.array([4, 8])
    got = pass_at_k_curve(counts, n, [1, 4])
    np.testing.assert_allclose(got, [(1 / 4 + 2 / 8) / 2,
                                     (1.0 + pass_at_k(8, 2, 4)) / 2])
    with pytest.raises(ValueError, match="k must be <= n"):
        pass_at_k_curve(counts, n, [5])
    with pytest.raises(ValueError, match="n must"):
        pass_at_k_curve(counts, np.array([4, 8, 8]), [1])


def test_curve_random_monotone():
    rng = np.random.default_rng(1)
    n = 64
    counts = rng.binomial(n, rng.uniform(0, 0.2, size=50))
    curve = pass_at_k_curve(counts, n, range(1, n + 1))
    assert np.all(np.diff(curve) >= -1e-15)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(8) == [1, 2, 4, 8]
    assert default_ks(10) == [1, 2, 4, 8, 10]
    with pytest.raises(ValueError, match="n must be >= 1"):
        default_ks(0)


# ----------------------------------------------------------------------------- coverage


def test_coverage():
    assert coverage([0, 0, 3, 1]) == 0.5
    assert coverage([0]) == 0.0
    with pytest.raises(ValueError, match="counts"):
        coverage([1, -1])
    with pytest.raises(ValueError, match="counts"):
        coverage([])


def test_newly_solved():
    base = np.array([0, 0, 0, 2, 5, 1])
    new = np.array([0, 4, 1, 0, 3, 1])
    got = newly_solved(base, new)
    assert got == {"base_unsolved": 3, "newly_solved": 2, "share": pytest.approx(2 / 3),
                   "lost": 1}
    none_unsolved = newly_solved([1, 2], [0, 2])
    assert none_unsolved["base_unsolved"] == 0 and math.isnan(none_unsolved["share"])
    assert none_unsolved["lost"] == 1
    with pytest.raises(ValueError, match="same shape"):
        newly_solved([0, 1], [0, 1, 2])


# ----------------------------------------------------------------------------- eta squared


def two_way(cell, r=1, noise=None):
    """Long-format table from a cell-mean matrix [A, B], r replicates per cell."""
    A, B = cell.shape
    vals, fa, fb = [], [], []
    for i in range(A):
        for j in range(B):
            for k in range(r):
                vals.append(cell[i, j] + (0.0 if noise is None else noise[i, j, k]))
                fa.append(f"a{i}")
                fb.append(f"b{j}")
    return np.array(vals), np.array(fa), np.array(fb)


def test_eta_squared_additive_effects():
    alpha = np.array([-1.0, 0.0, 1.0])  # sums to 0
    beta = np.array([2.0, -2.0])  # sums to 0
    cell = 5.0 + alpha[:, None] + beta[None, :]
    x, fa, fb = two_way(cell)
    # SS_a = B * sum alpha^2 = 2 * 2 = 4; SS_b = A * sum beta^2 = 3 * 8 = 24; total 28
    got = eta_squared(x, fa, fb)
    assert got["a"] == pytest.approx(4 / 28)
    assert got["b"] == pytest.approx(24 / 28)
    assert got["interaction"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(got["residual"]) and got["replicates"] == 1
    assert got["levels_a"] == ["a0", "a1", "a2"] and got["levels_b"] == ["b0", "b1"]


def test_eta_squared_additive_with_replicates_and_shuffled_rows():
    alpha, beta = np.array([-1.0, 1.0]), np.array([3.0, 0.0, -3.0])
    cell = alpha[:, None] + beta[None, :]
    x, fa, fb = two_way(cell, r=3)
    perm = np.random.default_rng(0).permutation(x.size)
    got = eta_squared(x[perm], fa[perm], fb[perm])
    # SS_a = r*B*sum alpha^2 = 3*3*2 = 18; SS_b = r*A*sum beta^2 = 3*2*18 = 108
    assert got["a"] == pytest.approx(18 / 126) and got["b"] == pytest.approx(108 / 126)
    assert got["interaction"] == pytest.approx(0.0, abs=1e-12)
    assert got["residual"] == pytest.approx(0.0, abs=1e-12)
    assert got["replicates"] == 3


def test_eta_squared_pure_interaction():
    cell = np.array([[1.0, -1.0], [-1.0, 1.0]])
    got = eta_squared(*two_way(cell))
    assert got["a"] == pytest.approx(0.0, abs=1e-12)
    assert got["b"] == pytest.approx(0.0, abs=1e-12)
    assert got["interaction"] == pytest.approx(1.0)


def test_eta_squared_replicates_residual():
    rng = np.random.default_rng(3)
    cell = np.array([[0.0, 1.0, 2.0], [1.0, 3.0, 0.0]])
    noise = rng.normal(0, 0.3, size=(2, 3, 4))
    x, fa, fb = two_way(cell, r=4, noise=noise)
    got = eta_squared(x, fa, fb)
    assert got["replicates"] == 4 and got["residual"] > 0 and got["interaction"] > 0
    total = got["a"] + got["b"] + got["interaction"] + got["residual"]
    assert total == pytest.approx(1.0)
    # residual share computed directly from the noise around each cell's mean
    centred = noise - noise.mean(axis=2, keepdims=True)
    assert got["residual"] == pytest.approx(np.sum(centred ** 2) / np.sum((x - x.mean()) ** 2))


def test_eta_squared_constant_values_all_nan():
    got = eta_squared([0.1] * 6, ["p", "p", "p", "q", "q", "q"], ["x", "y", "z"] * 2)
    assert all(math.isnan(got[k]) for k in ("a", "b", "interaction", "residual"))


def test_eta_squared_unbalanced_refused():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    fa = ["p", "p", "q", "q", "q"]
    fb = ["x", "y", "x", "y", "y"]
    with pytest.raises(ValueError, match=r"unbalanced.*a='q', b='y'"):
        eta_squared(x, fa, fb)
    # a missing cell is unbalanced too
    with pytest.raises(ValueError, match=r"unbalanced.*a='q', b='y'.* 0 observations"):
        eta_squared([1.0, 2.0, 3.0], ["p", "p", "q"], ["x", "y", "x"])
    with pytest.raises(ValueError, match="factor_b"):
        eta_squared([1.0, 2.0], ["p", "q"], ["x"])


# ----------------------------------------------------------------------------- entropy


def test_mean_token_entropy_formula():
    assert mean_token_entropy([-3.0, -1.0], [2, 2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="token_counts"):
        mean_token_entropy([-1.0], [0])
    with pytest.raises(ValueError, match="sum_logprobs"):
        mean_token_entropy([2.0], [1])


def test_mean_token_entropy_converges_to_true_entropy():
    # i.i.d. tokens from a fixed categorical: the estimate approaches H(p)
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.25, 0.125, 0.125])
    true_h = -np.sum(p * np.log(p))
    lengths = rng.integers(1, 30, size=2000)
    sums = np.array([np.log(p[rng.choice(4, size=L, p=p)]).sum() for L in lengths])
    assert mean_token_entropy(sums, lengths) == pytest.approx(true_h, abs=0.02)


# ----------------------------------------------------------------------------- diversity


def test_distinct_correct():
    texts = ["1 + 2 = 3", "1+2=3", "2 + 1 = 3", "1+2 =3", "9 - 6 = 3"]
    correct = [True, True, True, False, False]
    assert distinct_correct(texts, correct) == 2
    assert distinct_correct(texts, [False] * 5) == 0
    assert distinct_correct(texts, [True] * 5) == 3
    # a key that ignores operand order merges "1+2" and "2+1"
    assert distinct_correct(texts, correct,
                            key=lambda t: "".join(sorted(t.replace(" ", "")))) == 1
    with pytest.raises(ValueError, match="same length"):
        distinct_correct(texts, correct[:2])


def test_module_imports_numpy_only():
    src = Path(__file__).parent.parent / "treesearch" / "utils" / "estimators.py"
    tree = ast.parse(src.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & {"torch", "policies", "critics"}


def test_standard_error_of_a_proportion():
    from treesearch.utils.estimators import standard_error

    x = np.array([1.0] * 30 + [0.0] * 70)
    assert standard_error(x) == pytest.approx(np.sqrt(0.3 * 0.7 / 99), rel=1e-12)
    assert standard_error([1.0]) == 0.0


def test_paired_difference_is_the_mean_and_error_of_the_item_differences():
    from treesearch.utils.estimators import paired_difference

    mean, se = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])   # differences 1, 0, 0, 1
    assert mean == pytest.approx(0.5) and se == pytest.approx(np.sqrt(1 / 3) / 2)
    assert paired_difference([1, 0], [1, 0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same items: 3 against 2"):
        paired_difference([1, 0, 1], [1, 0])
