"""policies.updates: sparsity and rank of weight updates on hand-built state dicts."""

import math

import pytest
import torch

from policies.updates import (
    summarise_ranks,
    tolerance_key,
    update_rank,
    update_sparsity,
)


def test_three_of_hundred_changed():
    g = torch.Generator().manual_seed(0)
    before = {"w": torch.randn(10, 10, generator=g)}
    after = {"w": before["w"].clone()}
    after["w"].view(-1)[[3, 50, 97]] += 1e-3
    got = update_sparsity(before, after, tolerances=(0.0, 1e-2), dtypes=("fp32",))
    assert got["fp32"]["0"] == pytest.approx(0.97)
    assert got["fp32"]["0.01"] == 1.0
    assert got["n_params"] == 100
    assert got["per_tensor"]["w"] == {"fp32@0": pytest.approx(0.97), "fp32@0.01": 1.0}
    assert before["w"].view(-1)[3] != after["w"].view(-1)[3]  # inputs untouched


def test_tiny_update_rounds_away_in_bf16():
    before = {"w": torch.ones(4)}
    after = {"w": before["w"] + torch.tensor([1e-7, 0.0, 0.0, 0.0])}
    assert after["w"][0] != 1.0  # 1e-7 is about one fp32 ulp at 1.0
    got = update_sparsity(before, after)
    assert got["fp32"]["0"] == 0.75
    assert got["bf16"]["0"] == 1.0
    # an update of 2^-6 survives bf16 (spacing 2^-7 near 1.0)
    after2 = {"w": before["w"] + torch.tensor([2.0 ** -6, 0.0, 0.0, 0.0])}
    assert update_sparsity(before, after2)["bf16"]["0"] == 0.75


def test_shares_weighted_by_elements_and_int_buffers_ignored():
    before = {"a": torch.zeros(3), "b": torch.zeros(1, dtype=torch.float64),
              "step": torch.tensor([5]), "mask": torch.tensor([True, False])}
    after = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.ones(1, dtype=torch.float64),
             "step": torch.tensor([6]), "mask": torch.tensor([False, False])}
    got = update_sparsity(before, after, tolerances=(0.0,))
    assert got["n_params"] == 4
    assert got["fp32"]["0"] == 0.5 and got["bf16"]["0"] == 0.5
    assert set(got["per_tensor"]) == {"a", "b"}
    assert got["per_tensor"]["a"]["bf16@0"] == pytest.approx(2 / 3)
    assert got["per_tensor"]["b"]["fp32@0"] == 0.0


def test_default_tolerance_keys():
    w = {"w": torch.zeros(2)}
    got = update_sparsity(w, w)
    assert list(got["fp32"]) == ["0", "1e-08", "1e-06", "1e-05"]
    assert set(got["per_tensor"]["w"]) == {f"{d}@{k}" for d in ("fp32", "bf16")
                                           for k in ("0", "1e-08", "1e-06", "1e-05")}
    assert tolerance_key(1e-6) == "1e-06"


def test_tolerance_is_inclusive_and_nan_counts_as_changed():
    before = {"w": torch.zeros(3)}
    after = {"w": torch.tensor([0.5, float("nan"), 0.0])}
    got = update_sparsity(before, after, tolerances=(0.5,), dtypes=("fp32",))
    assert got["fp32"]["0.5"] == pytest.approx(2 / 3)


def test_mismatches_raise_naming_key():
    before = {"enc.w": torch.zeros(2, 2), "enc.b": torch.zeros(2)}
    with pytest.raises(ValueError, match="enc.b"):
        update_sparsity(before, {"enc.w": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="extra"):
        update_sparsity(before, {**before, "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"enc\.w.*shape"):
        update_sparsity(before, {"enc.w": torch.zeros(2, 3), "enc.b": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"enc\.w"):
        update_rank(before, {"enc.w": torch.zeros(4), "enc.b": torch.zeros(2)})
    with pytest.raises(ValueError, match="dtypes"):
        update_sparsity(before, before, dtypes=("int8",))
    with pytest.raises(ValueError, match="tolerances"):
        update_sparsity(before, before, tolerances=(-1.0,))


def test_rank_of_low_rank_delta():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(12, 2, generator=g), torch.randn(8, 2, generator=g)
    w = torch.randn(12, 8, generator=g)
    before = {"w": w, "z": torch.randn(5, 5, generator=g), "bias": torch.zeros(8),
              "ids": torch.arange(6).reshape(2, 3)}
    after = {"w": w + u @ v.T, "z": before["z"].clone(), "bias": torch.ones(8),
             "ids": before["ids"] + 1}
    ranks = update_rank(before, after)
    assert [r["name"] for r in ranks] == ["w", "z"]  # 2-D floating tensors only
    rw, rz = ranks
    assert rw == {"name": "w", "shape": (12, 8), "rank": 2, "full_rank": 8,
                  "rank_share": 0.25}
    assert rz["rank"] == 0 and rz["rank_share"] == 0.0


def test_rank_full_and_rel_tol():
    delta = torch.diag(torch.tensor([1.0, 1e-2, 1e-5]))
    before, after = {"m": torch.zeros(3, 3)}, {"m": delta}
    assert update_rank(before, after)[0]["rank"] == 2  # 1e-5 < 1e-3 * 1
    assert update_rank(before, after, rel_tol=1e-6)[0]["rank"] == 3
    assert update_rank(before, after, rel_tol=0.1)[0]["rank"] == 1


def test_summarise_ranks():
    ranks = [{"rank_share": 0.25}, {"rank_share": 1.0}, {"rank_share": 0.0}]
    got = summarise_ranks(ranks)
    assert got == {"mean_rank_share": pytest.approx(1.25 / 3), "median_rank_share": 0.25,
                   "n_matrices": 3}
    empty = summarise_ranks([])
    assert empty["n_matrices"] == 0 and math.isnan(empty["mean_rank_share"])
