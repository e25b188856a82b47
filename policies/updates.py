"""How a fine-tuning run changed the weights: sparsity and rank of the update.

    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ... train ...
    sparsity = update_sparsity(before, model.state_dict())
    sparsity["bf16"]["0"]            # share of parameters a bf16 checkpoint leaves equal
    ranks = update_rank(before, model.state_dict())
    summarise_ranks(ranks)           # {"mean_rank_share", "median_rank_share", "n_matrices"}

Both take state dicts (name -> tensor) with the same keys and shapes. Only floating-point
tensors count; integer and boolean buffers (position ids, step counters) are ignored.
Nothing is changed in place; tensors stay on their device (``after`` is moved to the
device of ``before`` where they differ).

Tolerance keys are ``f"{t:g}"``: 0.0 -> ``"0"``, 1e-8 -> ``"1e-08"``, 1e-6 -> ``"1e-06"``,
1e-5 -> ``"1e-05"``; per-tensor keys join dtype and tolerance key with ``@``, e.g.
``"fp32@0"`` or ``"bf16@1e-06"``.
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

import torch

__all__ = ["update_sparsity", "update_rank", "summarise_ranks", "DTYPES", "tolerance_key"]

#: dtype names accepted by ``update_sparsity``
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
          "fp64": torch.float64}

StateDict = Mapping[str, torch.Tensor]


def tolerance_key(t: float) -> str:
    """The dictionary key of tolerance ``t``: ``f"{t:g}"`` (0.0 -> "0", 1e-8 -> "1e-08")."""
    return f"{float(t):g}"


def _float_pairs(before: StateDict, after: StateDict) -> list[tuple[str, torch.Tensor,
                                                                    torch.Tensor]]:
    """(name, before, after) for every floating-point tensor, in the order of ``before``.

    ValueError naming the key if the keys differ, a shape differs, or one side is floating
    point and the other is not.
    """
    missing = [k for k in before if k not in after]
    if missing:
        raise ValueError(f"key {missing[0]!r} is in before but not in after")
    extra = [k for k in after if k not in before]
    if extra:
        raise ValueError(f"key {extra[0]!r} is in after but not in before")
    pairs = []
    for name, b in before.items():
        a = after[name]
        if not isinstance(b, torch.Tensor) or not isinstance(a, torch.Tensor):
            raise ValueError(f"key {name!r}: values must be tensors, got "
                             f"{type(b).__name__} and {type(a).__name__}")
        if tuple(b.shape) != tuple(a.shape):
            raise ValueError(f"key {name!r}: shape {tuple(b.shape)} in before, "
                             f"{tuple(a.shape)} in after")
        if b.is_floating_point() != a.is_floating_point():
            raise ValueError(f"key {name!r}: dtype {b.dtype} in before, {a.dtype} in after")
        if b.is_floating_point():
            pairs.append((name, b.detach(), a.detach().to(b.device)))
    return pairs


def update_sparsity(before: StateDict, after: StateDict,
                    tolerances: Sequence[float] = (0.0, 1e-8, 1e-6, 1e-5),
                    dtypes: Sequence[str] = ("fp32", "bf16")) -> dict:
    """Share of parameters an update left unchanged, per storage dtype and tolerance.

    Args:
        before, after: state dicts (name -> tensor), same keys and shapes.
        tolerances: absolute tolerances >= 0, in weight units.
        dtypes: names from ``DTYPES`` ("fp32", "bf16", "fp16", "fp64").

    An element is unchanged in dtype d at tolerance t when
    ``|float32(cast_d(after)) - float32(cast_d(before))| <= t``: both tensors are rounded
    to d first, so an update smaller than d's spacing near the weight rounds away and
    counts as unchanged (in bf16 the spacing near 1.0 is 2^-7). NaN differences (a NaN
    weight, or inf - inf) count as changed.

    Returns:
        ``{d: {tolerance_key(t): share}}`` for each dtype d (shares over all floating
        elements of all tensors, in [0, 1]); ``"n_params"``: the number of those elements;
        ``"per_tensor"``: ``{name: {f"{d}@{tolerance_key(t)}": share}}``.
    """
    tolerances = [float(t) for t in tolerances]
    if not tolerances:
        raise ValueError("tolerances must not be empty")
    for t in tolerances:
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"tolerances must be finite and >= 0, got {t}")
    keys = [tolerance_key(t) for t in tolerances]
    if len(set(keys)) != len(keys):
        raise ValueError(f"tolerances map to duplicate keys: {keys}")
    dtypes = list(dtypes)
    if not dtypes:
        raise ValueError("dtypes must not be empty")
    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f"dtypes: unknown dtype {d!r}, expected one of {sorted(DTYPES)}")

    pairs = _float_pairs(before, after)
    n_params = sum(b.numel() for _, b, _ in pairs)
    if n_params == 0:
        raise ValueError("before holds no floating-point elements")

    unchanged = {d: [0] * len(tolerances) for d in dtypes}
    per_tensor = {}
    for name, b, a in pairs:
        row = {}
        for d in dtypes:
            dt = DTYPES[d]
            diff = (a.to(dt).to(torch.float32) - b.to(dt).to(torch.float32)).abs()
            for j, (t, key) in enumerate(zip(tolerances, keys)):
                n_same = int((diff <= t).sum().item())
                unchanged[d][j] += n_same
                row[f"{d}@{key}"] = n_same / b.numel() if b.numel() else float("nan")
        per_tensor[name] = row

    out = {d: {key: unchanged[d][j] / n_params for j, key in enumerate(keys)}
           for d in dtypes}
    out["n_params"] = n_params
    out["per_tensor"] = per_tensor
    return out


def update_rank(before: StateDict, after: StateDict, rel_tol: float = 1e-3) -> list[dict]:
    """Numerical rank of the update of every 2-D floating-point tensor.

    Args:
        before, after: state dicts (name -> tensor), same keys and shapes.
        rel_tol: a singular value counts when it is > ``rel_tol`` times the largest one.

    delta = float32(after) - float32(before); its singular values come from
    ``torch.linalg.svdvals``. An all-zero delta has rank 0. Tensors with a zero-sized
    dimension are skipped.

    Returns:
        one dict per 2-D tensor, in the order of ``before``: ``{"name", "shape" (tuple),
        "rank" (int), "full_rank": min(shape), "rank_share": rank / full_rank}``.
    """
    rel_tol = float(rel_tol)
    if not math.isfinite(rel_tol) or rel_tol < 0:
        raise ValueError(f"rel_tol must be finite and >= 0, got {rel_tol}")
    out = []
    for name, b, a in _float_pairs(before, after):
        if b.ndim != 2 or b.numel() == 0:
            continue
        delta = a.to(torch.float32) - b.to(torch.float32)
        if not bool(torch.isfinite(delta).all()):
            raise ValueError(f"key {name!r}: the update holds non-finite values")
        full = min(delta.shape)
        if not bool(delta.any()):
            rank = 0
        else:
            s = torch.linalg.svdvals(delta)
            rank = int((s > rel_tol * s[0]).sum().item())
        out.append({"name": name, "shape": tuple(delta.shape), "rank": rank,
                    "full_rank": full, "rank_share": rank / full})
    return out


def summarise_ranks(ranks: Sequence[Mapping]) -> dict:
    """Mean and median ``rank_share`` over the matrices of ``update_rank``.

    Returns:
        ``{"mean_rank_share", "median_rank_share"}`` (floats in [0, 1], nan when there are
        no matrices) and ``"n_matrices"`` (int).
    """
    shares = []
    for i, r in enumerate(ranks):
        if "rank_share" not in r:
            raise ValueError(f"ranks[{i}] has no 'rank_share' key")
        shares.append(float(r["rank_share"]))
    if not shares:
        return {"mean_rank_share": float("nan"), "median_rank_share": float("nan"),
                "n_matrices": 0}
    return {"mean_rank_share": statistics.fmean(shares),
            "median_rank_share": statistics.median(shares), "n_matrices": len(shares)}
