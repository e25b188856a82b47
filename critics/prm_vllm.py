"""A PRM's forward passes on a vLLM pooling engine (the GPU recipe's path).

``VLLMEngine.run(seqs)`` is ``critics.prm_engine.HFEngine.run`` on ``vllm.LLM`` with
``runner="pooling"``: every sequence is one ``TokensPrompt`` of an ``LLM.encode(...,
pooling_task="token_classify")`` call with token-wise pooling ``ALL``, so the engine
returns the head's score at every position and the critic reads its own positions (the
read positions of rlhflow are not a tag id, so vLLM's ``STEP`` pooling cannot find them).

    qwen-prm       served as it is (vLLM's ``Qwen2ForProcessRewardModel``): softmax over
                   the two classes per token; the score is column 1.
    math-shepherd, a causal LM converted by vLLM (``convert="classify"``, method
    rlhflow        ``from_2_way_softmax`` over the tokens (bad, good)): one label w_good -
                   w_bad from the LM head, sigmoid per token = P(good) of the two.
    value-head     refused by name: vLLM serves no ``Qwen2ForPrmModel`` (Skywork's value
                   head needs an out-of-tree plugin); use the HF backend.

vLLM batches the prompts itself; with ``enable_prefix_caching`` it reuses KV blocks of
shared prefixes where the pooling runner allows it, and ``counts.processed`` counts each
prompt's tokens not served from that cache (``num_cached_tokens``).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

from critics.base import CriticError
from critics.prm_formats import PRMFormat
from treesearch.engine.interfaces import TokenCounts
from treesearch.utils.checkpoints import model_directory

SERVED = ("qwen-prm", "math-shepherd", "rlhflow")


def engine_args(fmt: PRMFormat, head_kind: str) -> dict:
    """The ``vllm.LLM`` keyword arguments that serve ``fmt`` as a token-wise pooling model
    (``runner``, ``convert``, ``hf_overrides``; the pooler config is added by the engine)."""
    if fmt.name not in SERVED:
        raise CriticError(f"PRM format {fmt.name}: vLLM serves no scalar value-head PRM "
                          "(Skywork's Qwen2ForPrmModel needs an out-of-tree plugin); use the "
                          "hf backend")
    if head_kind == "verdict":
        good, bad = fmt.tokenizer.convert_ids_to_tokens(list(fmt.verdict))
        return {"runner": "pooling", "convert": "classify",
                "hf_overrides": {"classifier_from_token": [bad, good],
                                 "method": "from_2_way_softmax"}}
    return {"runner": "pooling"}


class VLLMEngine:
    """``HFEngine``'s interface (``run``, ``reset``, ``counts``) on a vLLM pooling engine.

    path: the checkpoint; fmt: its checked format; head_kind: ``critics.prm_formats.HEADS``
    of it; dtype: the engine's (default float32); cache: vLLM's prefix caching;
    engine_kwargs: passed on to ``vllm.LLM`` (max_model_len, block_size, ...).
    """

    def __init__(self, path, fmt: PRMFormat, head_kind: str, *, dtype=None, cache: bool = True,
                 **engine_kwargs):
        path = model_directory("VLLMEngine", path)
        kwargs = engine_args(fmt, head_kind)
        try:
            from vllm import LLM  # lazy: vllm is optional
            from vllm.config import PoolerConfig  # lazy: vllm is optional
            from vllm.platforms import current_platform  # lazy: vllm is optional
        except ImportError as exc:
            raise CriticError(f"the vllm PRM backend needs vllm ({exc}); use the hf backend") \
                from None
        if str(current_platform.device_type) == "cpu":  # as policies.vllm: one process
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        _shield_llvmlite()
        self.two_class = head_kind == "two_class"
        self.counts = TokenCounts()
        try:
            self.llm = LLM(model=str(path), tokenizer=str(path), dtype=str(dtype or "float32"),
                           enable_prefix_caching=cache,
                           pooler_config=PoolerConfig(task="token_classify",
                                                      tok_pooling_type="ALL"),
                           **kwargs, **engine_kwargs)
        except Exception as exc:
            raise CriticError(f"vLLM cannot serve the {fmt.name} PRM at {str(path)!r} as a "
                              f"pooling model ({type(exc).__name__}: {exc})") from exc

    def reset(self) -> None:
        self.llm.reset_prefix_cache()

    def run(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """seqs: token ids [T_i] each; returns float32 [T_i] per sequence: the score at
        every position."""
        from vllm.inputs import TokensPrompt  # lazy: vllm is optional

        prompts = [TokensPrompt(prompt_token_ids=[int(t) for t in s]) for s in seqs]
        outputs = self.llm.encode(prompts, pooling_task="token_classify", use_tqdm=False)
        out = []
        for seq, req in zip(seqs, outputs):
            data = req.outputs.data.float().cpu().numpy().astype(np.float32)
            scores = data[:, 1] if self.two_class else data.reshape(len(data), -1)[:, 0]
            if scores.shape != (len(seq),):
                raise CriticError(f"vLLM returned {scores.shape} scores for a sequence of "
                                  f"{len(seq)} tokens")
            self.counts.processed += len(seq) - int(getattr(req, "num_cached_tokens", 0) or 0)
            out.append(scores)
        return out


def _shield_llvmlite() -> None:
    """vLLM 0.32's start-up module scan calls ``vars(value).get("kernel")`` on every module
    attribute and fails on llvmlite's lazy library wrapper (numba, which the tree kernels
    load): give the wrapper a real, empty ``__dict__`` entry. The same work-around as
    ``policies.vllm._shield_llvmlite_from_vllm_module_scan`` (critics cannot import
    policies), which explains it."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None) if ffi is not None else None
    if isinstance(table, dict):
        table.setdefault("__dict__", {})
