"""A PRM's forward passes on transformers: one pass per state, shared prefixes run once.

``load_prm_model`` builds (trunk, head) from a checkpoint: the trunk is the base model
(hidden states, no LM head), the head maps a hidden state h (float [..., hidden]) to the
score of a read position in [0, 1] (float [...]):

    verdict    sigmoid(w_good . h - w_bad . h)  = softmax(logit good, logit bad)[0], the two
               rows of the LM head (math-shepherd, rlhflow)
    two_class  softmax(Linear(ReLU(Linear(h))))[1]  (qwen-prm's ``score`` head)
    scalar     sigmoid(v_head.summary(h))  (value-head)

``HFEngine.run(seqs)`` takes each state's rendered ids up to its last read position (the
tokens after it cannot change a causal model's earlier outputs, so they are never run)
and returns the head's score at every position of every sequence. The KV states of
every sequence run are kept in ``PrefixCache`` (a token trie, least recently used out,
bounded in tokens); a later sequence runs only what follows its longest cached prefix,
and the scores of the cached positions come from the cache. Within one call, a prefix
that two or more sequences share beyond what is cached is run once first (the problem
and system text of sibling states, a parent's steps), so siblings scored together reuse
it too. ``counts.processed`` counts the tokens run through the trunk, nothing else.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, DynamicCache

from critics.prm_formats import VALUE_HEAD_WEIGHT, PRMFormat, read_tensors
from treesearch.engine.interfaces import TokenCounts
from treesearch.utils.checkpoints import as_dtype

# ----------------------------------------------------------------------------- model


class VerdictHead(nn.Module):
    """sigmoid((w_good - w_bad) . h + b_good - b_bad): rows [2, hidden] of an LM head."""

    def __init__(self, rows: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("rows", rows)
        self.register_buffer("bias", bias if bias is not None else torch.zeros(2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = h.float() @ self.rows.float().T + self.bias.float()
        return torch.sigmoid(logits[..., 0] - logits[..., 1])


class TwoClassHead(nn.Module):
    """softmax(score(h))[1] with score = Linear(hidden, hidden), ReLU, Linear(hidden, 2)."""

    def __init__(self, score: nn.Sequential):
        super().__init__()
        self.score = score

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.score(h.to(self.score[0].weight.dtype)).float(), -1)[..., 1]


class ScalarHead(nn.Module):
    """sigmoid(summary(h)), summary = Linear(hidden, 1)."""

    def __init__(self, summary: nn.Linear):
        super().__init__()
        self.summary = summary

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.summary(h.to(self.summary.weight.dtype)).float()[..., 0])


def _linear(tensors: dict, prefix: str) -> nn.Linear:
    weight = tensors[f"{prefix}.weight"]
    bias = tensors.get(f"{prefix}.bias")
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def load_prm_model(path, fmt: PRMFormat, head_kind: str, device="cpu", dtype=None):
    """(trunk, head) of the PRM checkpoint at ``path``, in eval mode on ``device``; float32
    unless ``dtype`` (the head of a verdict format keeps the LM head's dtype)."""
    dtype = as_dtype(dtype) or torch.float32
    quiet = logging.getLogger("transformers.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the heads' weights are unused by the trunk: expected
    try:
        if head_kind == "verdict":
            lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
            out = lm.get_output_embeddings()
            ids = list(fmt.verdict)
            bias = out.bias[ids].detach().clone() if getattr(out, "bias", None) is not None \
                else None
            head = VerdictHead(out.weight[ids].detach().clone(), bias)
            trunk = lm.base_model
        else:
            trunk = AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype,
                                              trust_remote_code=False)
            if head_kind == "two_class":
                names = [f"score.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
                tensors = read_tensors(path, names)
                head = TwoClassHead(nn.Sequential(_linear(tensors, "score.0"), nn.ReLU(),
                                                  _linear(tensors, "score.2")))
            else:
                prefix = VALUE_HEAD_WEIGHT.removesuffix(".weight")
                head = ScalarHead(_linear(read_tensors(path, [VALUE_HEAD_WEIGHT,
                                                              f"{prefix}.bias"]), prefix))
    finally:
        quiet.setLevel(level)
    return trunk.to(device).eval(), head.to(device).eval()


# ----------------------------------------------------------------------------- prefix cache

@dataclass(eq=False)
class Entry:
    """One cached token prefix ``key``, stored as a delta on ``parent``: per layer K and V
    float [kv_heads, m, head_dim] and the head's scores float32 [m] of its own m =
    len(key) - len(parent.key) positions."""

    key: tuple[int, ...]
    parent: "Entry | None"
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    scores: np.ndarray

    @property
    def start(self) -> int:
        return len(self.parent.key) if self.parent is not None else 0

    def chain(self) -> list["Entry"]:
        out, e = [], self
        while e is not None:
            out.append(e)
            e = e.parent
        return out[::-1]

    def all_scores(self) -> np.ndarray:
        """float32 [len(key)]: the scores of every position of ``key``."""
        return np.concatenate([e.scores for e in self.chain()])


@dataclass
class PrefixCache:
    """Token trie of ``Entry``s, least recently used out once over ``max_tokens`` own
    tokens (an evicted entry lives on while a cached child chains through it);
    ``max_tokens=0``: nothing is kept."""

    max_tokens: int
    lru: OrderedDict = field(default_factory=OrderedDict)
    tokens: int = 0

    def __post_init__(self):
        self.trie: dict = {}

    def longest(self, seq: Sequence[int]) -> Entry | None:
        node, best = self.trie, None
        for t in seq:
            node = node.get(t)
            if node is None:
                break
            best = node.get("entry", best)
        if best is not None:
            self.lru.move_to_end(best.key)
        return best

    def add(self, entry: Entry) -> None:
        if self.max_tokens <= 0 or entry.key in self.lru:
            return
        node = self.trie
        for t in entry.key:
            node = node.setdefault(t, {})
        node["entry"] = entry
        self.lru[entry.key] = entry
        self.tokens += len(entry.key) - entry.start
        while self.tokens > self.max_tokens and self.lru:
            self._evict(next(iter(self.lru)))

    def _evict(self, key: tuple[int, ...]) -> None:
        entry = self.lru.pop(key)
        self.tokens -= len(key) - entry.start
        path = [self.trie]
        for t in key:
            path.append(path[-1][t])
        del path[-1]["entry"]
        for depth in range(len(key), 0, -1):  # prune empty branches
            if path[depth]:
                break
            del path[depth - 1][key[depth - 1]]


def shared_prefixes(seqs: Sequence[tuple[int, ...]], cached: Sequence[int]) -> list[tuple]:
    """The prefixes worth running once for several sequences: each longest common prefix
    of two neighbours in sorted order that is longer than what either has cached and
    shorter than both; shortest first."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    out = set()
    for a, b in zip(order, order[1:]):
        x, y = seqs[a], seqs[b]
        n = 0
        limit = min(len(x), len(y))
        while n < limit and x[n] == y[n]:
            n += 1
        if n > max(cached[a], cached[b]) and n < max(len(x), len(y)):
            out.add(x[:n])
    return sorted(out, key=len)


# ----------------------------------------------------------------------------- engine

class HFEngine:
    """Runs a PRM's trunk and head over token sequences with prefix reuse.

    trunk: a transformers base model (hidden states); head: hidden float [..., H] ->
    score float [...] in [0, 1]. batch_size: rows per forward. cache_tokens: the prefix
    cache's bound in tokens (0: no reuse, every sequence runs whole).
    counts.processed: tokens run through the trunk.
    """

    def __init__(self, trunk, head, *, batch_size: int = 16, cache_tokens: int = 1 << 16):
        self.trunk, self.head = trunk, head
        self.device = next(trunk.parameters()).device
        self.batch_size = int(batch_size)
        self.cache = PrefixCache(int(cache_tokens))
        self.counts = TokenCounts()
        config = trunk.config.get_text_config(decoder=True)
        self.n_layers = config.num_hidden_layers
        heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads

    def reset(self) -> None:
        self.cache = PrefixCache(self.cache.max_tokens)

    def run(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """seqs: token ids, each [T_i] (T_i >= 1); returns float32 [T_i] per sequence: the
        head's score at every position."""
        seqs = [tuple(int(t) for t in s) for s in seqs]
        uniq = list(dict.fromkeys(seqs))  # a state scored twice in one call runs once
        with torch.inference_mode():
            if self.cache.max_tokens <= 0:
                done = []
                for i in range(0, len(uniq), self.batch_size):
                    rows = uniq[i:i + self.batch_size]
                    done += self._batch(rows, [None] * len(rows))
            else:
                hits = [self.cache.longest(s) for s in uniq]
                warm = shared_prefixes(uniq, [len(h.key) if h else 0 for h in hits])
                for group in _waves(warm):  # shared prefixes first, shorter before longer
                    self._run_cached(group)
                done = self._run_cached(uniq)
        found = dict(zip(uniq, done))
        return [found[s] for s in seqs]

    def _run_cached(self, seqs: list[tuple[int, ...]]) -> list[np.ndarray]:
        """Every sequence through the cache: the uncached ones run (in batches of similar
        tails), and every one's scores read back from its entry."""
        hits = [self.cache.longest(s) for s in seqs]
        todo = [i for i, (s, h) in enumerate(zip(seqs, hits)) if h is None or h.key != s]
        out: list[np.ndarray | None] = [h.all_scores() if h is not None and h.key == s
                                        else None for s, h in zip(seqs, hits)]
        todo.sort(key=lambda i: len(seqs[i]) - (len(hits[i].key) if hits[i] else 0))
        for start in range(0, len(todo), self.batch_size):
            rows = todo[start:start + self.batch_size]
            for i, scores in zip(rows, self._batch([seqs[i] for i in rows],
                                                   [hits[i] for i in rows])):
                out[i] = scores
        return out

    def _batch(self, seqs: list[tuple[int, ...]], hits: list[Entry | None]) -> list[np.ndarray]:
        """One forward over the uncached tails of ``seqs`` (KV of the cached part left-
        padded to C columns, tails right-padded to R); stores each sequence in the cache.
        Returns float32 [len(seq)] scores per sequence."""
        cached = [len(h.key) if h is not None else 0 for h in hits]
        tails = [s[c:] for s, c in zip(seqs, cached)]
        B, C, R = len(seqs), max(cached), max(len(t) for t in tails)
        keep = self.cache.max_tokens > 0
        cache = DynamicCache(self._assemble(hits, C)) if C else (DynamicCache() if keep
                                                                  else None)
        mask = torch.zeros(B, C + R, dtype=torch.long)
        ids = torch.zeros(B, R, dtype=torch.long)
        pos = torch.zeros(B, R, dtype=torch.long)
        for b, (c, tail) in enumerate(zip(cached, tails)):
            mask[b, C - c:C + len(tail)] = 1
            ids[b, :len(tail)] = torch.tensor(tail, dtype=torch.long)
            pos[b, :len(tail)] = torch.arange(c, c + len(tail))
        dev = self.device
        hidden = self.trunk(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                            position_ids=pos.to(dev), past_key_values=cache,
                            use_cache=keep).last_hidden_state
        self.counts.processed += sum(len(t) for t in tails)
        scores = self.head(hidden).float().cpu().numpy()  # [B, R]
        out = []
        for b, (s, hit, tail) in enumerate(zip(seqs, hits, tails)):
            own = scores[b, :len(tail)].astype(np.float32)
            if keep:
                cols = slice(C, C + len(tail))
                entry = Entry(s, hit, [layer.keys[b, :, cols].clone() for layer in cache.layers],
                              [layer.values[b, :, cols].clone() for layer in cache.layers], own)
                self.cache.add(entry)
            out.append(np.concatenate([hit.all_scores(), own]) if hit is not None else own)
        return out

    def _assemble(self, hits: list[Entry | None], width: int) -> list[tuple]:
        """Per layer (K, V) float [B, kv_heads, width, head_dim]: each hit's KV right-aligned
        in its row (left padding), zeros elsewhere."""
        param = next(self.trunk.parameters())
        shape = (len(hits), self.kv_heads, width, self.head_dim)
        ks = [torch.zeros(shape, dtype=param.dtype, device=self.device)
              for _ in range(self.n_layers)]
        vs = [torch.zeros_like(k) for k in ks]
        for b, hit in enumerate(hits):
            if hit is None:
                continue
            col = width - len(hit.key)
            for seg in hit.chain():
                m = len(seg.key) - seg.start
                for layer in range(self.n_layers):
                    ks[layer][b, :, col:col + m] = seg.keys[layer]
                    vs[layer][b, :, col:col + m] = seg.values[layer]
                col += m
        return list(zip(ks, vs))


def _waves(prefixes: list[tuple]) -> list[list[tuple]]:
    """``prefixes`` in waves: none of a wave is a prefix of another of the same wave, so
    each can reuse the ones run in the waves before it."""
    waves: list[list[tuple]] = []
    for p in prefixes:  # shortest first
        depth = 0
        for w, wave in enumerate(waves):
            if any(p[:len(q)] == q for q in wave):
                depth = w + 1
        if depth == len(waves):
            waves.append([])
        waves[depth].append(p)
    return waves

