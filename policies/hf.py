"""transformers backend for the Policy protocol: batched step sampling with prefix KV reuse.

``HFPolicy.propose`` samples n next steps for each of many prefixes in one batch, with its
own decoding loop (model forward calls on a transformers KV cache) instead of ``generate``, so
that key/value states survive between calls:

- Prefix cache (``PrefixKVCache``): the KV states of every prefix it has run, and of
  every unfinished step it has sampled, are kept in a token trie, LRU-bounded in tokens.
  When the search expands a child (prefix + step), the longest cached prefix is found and
  only the tokens after it go through the model: for a child this is the step's last
  token (the sampled one that was never fed back), so ``counts.processed`` grows by about
  the generated tokens, not by the prompt again.
- The n samples of one prefix share one prefill: the prefix runs once at batch U (unique
  prefixes), then the cache is expanded along the batch dimension to len(prefixes) * n rows.
- Decoding runs on buffers allocated once per call (``_StepCache``, and the attention mask
  likewise) for every column the call can reach: each step writes its key/value column in
  place, and a finished row leaves the batch by moving the rows after it within the same
  buffers, not by copying the whole cache (``DynamicCache`` concatenates at every token).

Batch layout of one call (S = cache columns, U unique prefixes, B = len(prefixes) * n):

    columns [0, C)        cached KV, each row left-padded to C = max cached length
    columns [C, C+R)      prefill tokens (prefix[c:-1]), each row right-padded to R
    column  C+R           the last prefix token (its logits give the first step token)
    columns C+R+1 ...     one column per decoding step (rows leave the batch when done)

Padding columns are masked out with the 2D attention mask; positions are explicit
(``position_ids``), so holes in a row are harmless. Only full-attention decoder models
(Llama, SmolLM2, Qwen2, ...) are supported: sliding-window caches would drop columns.

Log-probabilities: ``StepProposal.logprob`` sums log p(token) under the model's own
distribution (softmax of the raw logits, temperature 1), whatever temperature and top-p
were used to sample; the search turns these into priors with its own temperature.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

from policies.contract import check_sampling, eos_token_ids, propose_keys
from policies.tokenization import StepEnds
from treesearch.engine.interfaces import StepProposal, TokenCounts
from treesearch.utils.checkpoints import as_dtype, load_model

# ----------------------------------------------------------------------------- prefix cache

@dataclass(eq=False)
class _Entry:
    """KV states of one token prefix ``key``, stored as a delta on a parent entry.

    keys/values: per layer, float [kv_heads, m, head_dim] for key[len(parent.key):],
    m = own_tokens. The full KV of ``key`` is the chain root -> ... -> parent -> self.
    """

    key: tuple[int, ...]
    parent: "_Entry | None"
    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def own_tokens(self) -> int:
        return len(self.key) - (len(self.parent.key) if self.parent is not None else 0)

    def chain(self) -> list["_Entry"]:
        """Entries from the root to self (the KV segments in order)."""
        out, e = [], self
        while e is not None:
            out.append(e)
            e = e.parent
        return out[::-1]


class _Node:
    __slots__ = ("children", "entry")

    def __init__(self):
        self.children: dict[int, _Node] = {}
        self.entry: _Entry | None = None


class PrefixKVCache:
    """Token trie of KV entries, least-recently-used first out, bounded in tokens.

    The bound counts each entry's own tokens. An evicted entry stays in memory while a
    live descendant still chains through it, so memory may exceed the bound by those
    ancestors (search trees evict old parents last, after their children, in practice).
    ``max_tokens=0`` disables caching.
    """

    def __init__(self, max_tokens: int):
        self.max_tokens = int(max_tokens)
        self.root = _Node()
        self.lru: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self.lru)

    def longest(self, tokens: Sequence[int]) -> _Entry | None:
        """The entry of the longest cached prefix of ``tokens`` (itself included), or None."""
        node, best = self.root, None
        for t in tokens:
            node = node.children.get(t)
            if node is None:
                break
            if node.entry is not None:
                best = node.entry
        if best is not None:
            self.lru.move_to_end(best.key)
        return best

    def add(self, key: tuple[int, ...], parent: _Entry | None,
            keys: list[torch.Tensor], values: list[torch.Tensor]) -> _Entry | None:
        """Store the KV delta of ``key`` over ``parent``; returns the entry (None if disabled)."""
        if self.max_tokens <= 0:
            return None
        if key in self.lru:  # already there (e.g. two identical samples): keep the old one
            self.lru.move_to_end(key)
            return self.lru[key]
        entry = _Entry(key, parent, keys, values)
        node = self.root
        for t in key:
            node = node.children.setdefault(t, _Node())
        node.entry = entry
        self.lru[key] = entry
        self.tokens += entry.own_tokens
        while self.tokens > self.max_tokens and self.lru:
            self._evict(next(iter(self.lru)))
        return entry

    def _evict(self, key: tuple[int, ...]) -> None:
        entry = self.lru.pop(key)
        self.tokens -= entry.own_tokens
        path = [self.root]
        for t in key:
            path.append(path[-1].children[t])
        path[-1].entry = None
        for depth in range(len(key), 0, -1):  # prune empty branches
            node = path[depth]
            if node.children or node.entry is not None:
                break
            del path[depth - 1].children[key[depth - 1]]


def _assemble(entries: list[_Entry | None], lengths: list[int], width: int, n_layers: int,
              like: tuple[int, int, torch.dtype, torch.device]):
    """Left-padded batch KV from cache entries.

    entries[u] (with lengths[u] <= len(entries[u].key) tokens used) -> per layer (K, V),
    each float [U, kv_heads, width, head_dim], row u's tokens in columns
    [width - lengths[u], width), zeros elsewhere.
    """
    heads, dim, dtype, device = like
    shape = (len(entries), heads, width, dim)
    ks = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
    vs = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
    for u, (entry, length) in enumerate(zip(entries, lengths)):
        if entry is None or length == 0:
            continue
        col = width - length
        for seg in entry.chain():
            m = min(seg.own_tokens, width - col)
            if m <= 0:
                break
            for layer in range(n_layers):
                ks[layer][u, :, col:col + m] = seg.keys[layer][:, :m]
                vs[layer][u, :, col:col + m] = seg.values[layer][:, :m]
            col += m
    return list(zip(ks, vs))


def _snapshot(cache, row: int, cols) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Copies of one batch row's KV at columns ``cols`` (slice or index tensor), per layer
    float [kv_heads, len(cols), head_dim]."""
    keys = [layer.keys[row, :, cols].clone() for layer in cache.layers]
    values = [layer.values[row, :, cols].clone() for layer in cache.layers]
    return keys, values


# ----------------------------------------------------------------------------- decode cache

class _StepLayer(DynamicLayer):
    """One layer's KV in buffers allocated once per ``_decode`` call.

    ``_k``/``_v`` are float [capacity_rows, kv_heads, capacity_columns, head_dim]; the
    filled part is rows [0, rows) x columns [0, length), and ``keys``/``values`` are views
    of it (what ``DynamicLayer`` readers such as ``_snapshot`` and the mask sizes see).
    ``update`` writes the new columns in place instead of concatenating; selecting rows
    moves only the rows that change place, within the same buffers.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, src: torch.Tensor, n: int,
                 columns: int):
        """Rows src[i] of keys/values (float [U, kv_heads, S, head_dim]) each repeated n
        times (row i * n + j <- src[i]), with room for ``columns`` more columns."""
        super().__init__()
        K, (_, H, S, D) = len(src), keys.shape
        self.dtype, self.device = keys.dtype, keys.device
        self._k = keys.new_empty((K * n, H, S + columns, D))
        self._v = values.new_empty((K * n, H, S + columns, values.shape[-1]))
        for buf, x in ((self._k, keys), (self._v, values)):
            buf.view(K, n, *buf.shape[1:])[:, :, :, :S] = x.index_select(0, src)[:, None]
        self.rows, self.length = K * n, S
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self._k[:self.rows, :, :self.length]
        self.values = self._v[:self.rows, :, :self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        q = key_states.shape[-2]
        end = self.length + q
        if key_states.shape[0] != self.rows:
            raise ValueError(f"_StepLayer holds {self.rows} rows, got {key_states.shape[0]}")
        if end > self._k.shape[2]:  # out of room (not expected in _decode): grow
            grow = max(end, 2 * self._k.shape[2]) - self._k.shape[2]
            self._k = torch.cat([self._k, self._k.new_zeros(*self._k.shape[:2], grow,
                                                            self._k.shape[3])], dim=2)
            self._v = torch.cat([self._v, self._v.new_zeros(*self._v.shape[:2], grow,
                                                            self._v.shape[3])], dim=2)
        self._k[:self.rows, :, self.length:end] = key_states
        self._v[:self.rows, :, self.length:end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor,
                             scratch: torch.Tensor | None = None) -> None:
        """Keep rows ``indices`` (increasing), in place: rows already in place stay put.
        scratch: a flat buffer of the same dtype to gather through (default: a new one)."""
        keep = indices.tolist()
        start = next((j for j, i in enumerate(keep) if i != j), len(keep))
        if start < len(keep):
            src = indices[start:].to(self._k.device)
            for buf in (self._k, self._v):
                shape = (len(src), *buf.shape[1:2], self.length, *buf.shape[3:])
                size = shape[0] * shape[1] * shape[2] * shape[3]
                if scratch is None or scratch.numel() < size:
                    scratch = buf.new_empty(size)
                moved = scratch[:size].view(shape)
                torch.index_select(buf[:self.rows, :, :self.length], 0, src, out=moved)
                buf[start:len(keep), :, :self.length] = moved
        self.rows = len(keep)
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("_StepLayer does not grow its batch")


class _StepCache(DynamicCache):
    """A ``DynamicCache`` of ``_StepLayer``s: the KV cache of one ``_decode`` call."""

    def __init__(self, layers: list[_StepLayer]):
        Cache.__init__(self, layers=layers)
        self._scratch: torch.Tensor | None = None  # shared by the layers' row selections

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._scratch is None:  # reused: fresh large allocations cost page faults
            size = max(max(layer._k.numel(), layer._v.numel()) for layer in self.layers)
            self._scratch = self.layers[0]._k.new_empty(size)
        for layer in self.layers:
            layer.batch_select_indices(indices, self._scratch)

    @classmethod
    def expanded(cls, cache, src: torch.Tensor, n: int, columns: int) -> "_StepCache":
        """A prefill cache's rows src[i], each repeated n times, with room for ``columns``
        more columns."""
        return cls([_StepLayer(layer.keys, layer.values, src, n, columns)
                    for layer in cache.layers])


# ----------------------------------------------------------------------------- policy

@dataclass
class _Rows:
    """Per-sample state of one propose call (B rows)."""

    prefix: list[tuple[int, ...]]
    parent: list[_Entry | None]
    limit: list[int]
    steps: list[list[int]] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)
    carry: list[str] = field(default_factory=list)  # StepEnds state of each row


@dataclass(eq=False)
class _Batch:
    """The decoding state of one ``_decode`` call. Per lane (the policy, and a companion
    decoded in lockstep): its step cache, attention-mask buffer, mask width, last logits
    and ``_Rows`` (the same step lists, chained to that lane's cache entries). ``active``:
    the live rows, in batch order; ``slots`` / ``slot_idx``: batch position of each live
    row, None while they are exactly the batch (``nb`` rows); ``pos``: each batch row's
    next position."""

    lanes: list
    caches: list
    masks: list
    widths: list
    logits: list
    rows: list
    active: list[int]
    pos: torch.Tensor
    slots: list[int] | None = None
    slot_idx: torch.Tensor | None = None
    nb: int = 0

    def drop(self, keep: list[int], tok: torch.Tensor, compact_below: float) -> torch.Tensor:
        """Only the ``keep`` rows (positions among the live rows) stay live: finished rows
        ride along (their outputs ignored) until fewer than ``compact_below`` of the batch
        is live, then the batch is compacted. Returns the kept rows' tokens."""
        kept = keep if self.slots is None else [self.slots[b] for b in keep]
        tok = tok[torch.tensor(keep, device=tok.device)]
        self.active = [self.active[b] for b in keep]
        if len(kept) < compact_below * self.nb:
            idx = torch.tensor(kept, device=tok.device)
            for cache in self.caches:
                cache.batch_select_indices(idx)
            for mask, width in zip(self.masks, self.widths):
                mask[:len(kept), :width] = mask[:self.nb, :width].index_select(0, idx)
            self.pos = self.pos[idx]
            self.nb, self.slots, self.slot_idx = len(kept), None, None
        else:
            self.slots, self.slot_idx = kept, torch.tensor(kept, device=tok.device)
        return tok

    def feed(self, tok: torch.Tensor, pad_id: int) -> None:
        """Feed the live rows' tokens through every lane (riders get ``pad_id``)."""
        nb = self.nb
        if self.slot_idx is None:
            ids = tok[:, None]
        else:  # riders are fed padding
            ids = torch.full((nb, 1), pad_id, dtype=torch.long, device=tok.device)
            ids[self.slot_idx, 0] = tok
        self.widths = [width + 1 for width in self.widths]
        self.logits = [lane._forward(ids, mask[:nb, :width], self.pos[:, None], cache,
                                     processed=len(self.active))
                       for lane, mask, width, cache in zip(self.lanes, self.masks,
                                                           self.widths, self.caches)]
        self.pos = self.pos + 1


class HFPolicy:
    """Policy over any local causal LM from transformers, with prefix KV reuse.

    model: a directory written by ``save_pretrained`` (model + tokenizer), or a
        ``(model, tokenizer)`` pair already built.
    step_delimiter: text that ends a step (``policies.tokenization.StepEnds``: in one token
        or spelt across several, whatever the tokenizer); steps also end at EOS
        (finished=True) or after max_step_tokens tokens.
    temperature: 0 means greedy; top_p: nucleus sampling mass (1 = off).
    dtype: torch dtype or its name (default float32); seed: sampling seed (None: random);
        the generator lives on ``device``, so equal seeds give equal samples per device.
    cache_tokens: bound of the prefix KV cache in tokens (0 disables it).
    """

    def __init__(self, model, *, step_delimiter: str = "\n", temperature: float = 1.0,
                 top_p: float = 1.0, device: str = "cpu", dtype=None, seed: int | None = None,
                 cache_tokens: int = 1 << 16):
        if isinstance(model, (tuple, list)):
            model, tokenizer = model
            model = model.to(device=device, dtype=as_dtype(dtype) or model.dtype)
        else:
            model, tokenizer = load_model(model, device, dtype)
        check_sampling("HFPolicy", temperature, top_p)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.temperature, self.top_p = float(temperature), float(top_p)
        self.device = torch.device(device)
        self.counts = TokenCounts()
        self.seconds = 0.0
        self.kv = PrefixKVCache(cache_tokens)
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

        config = model.config
        self.name = getattr(config, "_name_or_path", "") or type(model).__name__
        self.max_positions = getattr(config, "max_position_embeddings", None)
        text_config = config.get_text_config(decoder=True)
        self.n_layers = text_config.num_hidden_layers
        heads = text_config.num_attention_heads
        self.kv_heads = getattr(text_config, "num_key_value_heads", None) or heads
        self.head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        vocab = model.get_output_embeddings().weight.shape[0]
        self.is_delim = torch.zeros(vocab, dtype=torch.bool)
        self.step_ends = StepEnds(tokenizer, step_delimiter)
        self.is_delim[[i for i in self.step_ends.whole if i < vocab]] = True
        eos = eos_token_ids(tokenizer, getattr(model, "generation_config", None), config)
        self.is_eos = torch.zeros(vocab, dtype=torch.bool)
        self.is_eos[[i for i in eos if 0 <= i < vocab]] = True

    # _decode keeps finished rows in its batch (outputs ignored, fed padding) while at least
    # this share of the batch is live, and compacts the batch below it. 1 (the default):
    # compact at every finish; below 1 is faster, but the batch size then differs, and
    # with it the float rounding of the live rows' logits (differences around 1e-7, which
    # can flip a sample in rare ties).
    _compact_below = 1.0

    # -- public -----------------------------------------------------------------------

    def describe(self) -> str:
        params = sum(p.numel() for p in self.model.parameters())
        rate = self.counts.generated / self.seconds if self.seconds else 0.0
        dtype = str(self.model.dtype).replace("torch.", "")
        return (f"hf model={self.name} params={params / 1e6:.2f}M device={self.device} "
                f"dtype={dtype} kv_cache={self.kv.max_tokens} tokens "
                f"generated_tok/s={rate:.0f}")

    def propose(self, prefixes: Sequence[Sequence[int]], n: int, max_step_tokens: int, *,
                companion: HFPolicy | None = None, choose=None) -> list[list[StepProposal]]:
        """For each prefix (token ids), n sampled next steps, all in one batch.

        Returns len(prefixes) lists of n ``StepProposal``. A step ends after the token that
        completes the delimiter (finished=False), EOS (finished=True), max_step_tokens
        tokens (finished=False), or when the model's context is full (finished=True).

        companion: another ``HFPolicy`` over the same vocabulary, decoded in lockstep on
        the same tokens with its own prefix cache (the study's token routing), and then
        ``choose(logits, companion_logits) -> (token ids long [A], log p float [A])``
        picks every token from both models' logits float32 [A, vocab] (``sample`` draws
        with this policy's sampling rule). Without one, tokens are sampled from this
        policy's logits.
        """
        keys = propose_keys("HFPolicy", self.name, prefixes, n, max_step_tokens,
                            self.max_positions, "max_position_embeddings")
        if not keys:
            return []
        start = time.perf_counter()
        with torch.inference_mode():
            rows = self._decode(keys, n, max_step_tokens, companion, choose)
        self.seconds += time.perf_counter() - start
        out = []
        for i in range(len(keys)):
            props = []
            for r in range(i * n, (i + 1) * n):
                toks = np.asarray(rows.steps[r], dtype=np.int32)
                props.append(StepProposal(toks, float(rows.logps[r]), len(toks), rows.finished[r]))
            out.append(props)
        return out

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        """logits float32 [A, vocab] -> token ids long [A], by this policy's sampling rule
        (greedy at temperature 0, else temperature and top-p) and its generator."""
        if self.temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p < 1:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > self.top_p  # keeps at least the top token
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            pick = torch.multinomial(sorted_p, 1, generator=self.generator)
            return order.gather(1, pick).squeeze(1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def reset_cache(self) -> None:
        """Forget every cached prefix (call it after changing the model's weights)."""
        self.kv = PrefixKVCache(self.kv.max_tokens)

    # -- internals ----------------------------------------------------------------------

    def _forward(self, ids, mask, positions, cache, processed: int | None = None) -> torch.Tensor:
        """One model call; ids/positions long [rows, q], mask long [rows, S]; logits of the
        last column, float32 [rows, vocab]. ``processed``: the tokens to count (default:
        the unmasked ones among the new columns)."""
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        if processed is None:
            processed = int(mask[:, -ids.shape[1]:].sum())
        self.counts.processed += processed
        return out.logits[:, -1, :].float()

    def _prefill(self, uniq: list[tuple[int, ...]]):
        """Run the uncached part of each unique prefix at batch U.

        Returns (cache with U rows, mask long [U, S], logits float32 [U, vocab] for the
        first step token, entry of each full prefix or None).
        """
        dev = self.device
        hits = [self.kv.longest(k) for k in uniq]
        # at least the last token is run, for its logits
        cached = [min(len(e.key), len(k) - 1) if e is not None else 0 for e, k in zip(hits, uniq)]
        tails = [k[c:-1] for k, c in zip(uniq, cached)]
        U, C, R = len(uniq), max(cached), max(len(t) for t in tails)
        dtype = self.model.dtype
        if C:
            like = (self.kv_heads, self.head_dim, dtype, dev)
            cache = DynamicCache(_assemble(hits, cached, C, self.n_layers, like))
        else:
            cache = DynamicCache()
        mask = torch.zeros(U, C + R + 1, dtype=torch.long)
        ids = torch.full((U, R), self.pad_id, dtype=torch.long)
        pos = torch.zeros(U, R, dtype=torch.long)
        for u, (k, c, tail) in enumerate(zip(uniq, cached, tails)):
            mask[u, C - c:C] = 1
            mask[u, C:C + len(tail)] = 1
            mask[u, C + R] = 1
            ids[u, :len(tail)] = torch.tensor(tail, dtype=torch.long)
            pos[u, :len(tail)] = torch.arange(c, len(k) - 1)
        mask = mask.to(dev)
        if R:
            self._forward(ids.to(dev), mask[:, :C + R], pos.to(dev), cache)
        last = torch.tensor([[k[-1]] for k in uniq], dtype=torch.long, device=dev)
        last_pos = torch.tensor([[len(k) - 1] for k in uniq], dtype=torch.long, device=dev)
        logits = self._forward(last, mask, last_pos, cache)

        entries = []
        for u, (k, c, tail, hit) in enumerate(zip(uniq, cached, tails, hits)):
            if hit is not None and len(hit.key) == len(k):
                entries.append(hit)  # exact hit: only the last token was re-run
                continue
            cols = torch.tensor(list(range(C, C + len(tail))) + [C + R], device=dev)
            entries.append(self.kv.add(k, hit, *_snapshot(cache, u, cols))
                           if self.kv.max_tokens > 0 else None)
        return cache, mask, logits, entries

    def _decode(self, keys: list[tuple[int, ...]], n: int, max_step_tokens: int,
                companion: HFPolicy | None = None, choose=None) -> _Rows:
        """Sample n steps per prefix (``propose``'s companion and choose); rows leave the
        batch as soon as their step ends."""
        lanes = [self] if companion is None else [self, companion]
        limits = [lane.max_positions for lane in lanes if lane.max_positions is not None]
        room = min(limits) if limits else 1 << 62
        batch = self._start(lanes, keys, n, max_step_tokens, room)
        t = 0
        while True:
            live = (batch.logits if batch.slot_idx is None
                    else [x.index_select(0, batch.slot_idx) for x in batch.logits])
            if companion is None:
                tok = self.sample(live[0])
                logp = torch.log_softmax(live[0], dim=-1).gather(1, tok[:, None]).squeeze(1)
            else:
                tok, logp = choose(*live)
            t += 1
            self.counts.generated += len(batch.active)
            keep = self._record(batch, tok, logp, t, room)
            if not keep:
                return batch.rows[0]
            if len(keep) < len(batch.active):
                tok = batch.drop(keep, tok, self._compact_below)
            batch.feed(tok, self.pad_id)

    def _start(self, lanes: list[HFPolicy], keys: list[tuple[int, ...]], n: int,
               max_step_tokens: int, room: int) -> _Batch:
        """Prefill every lane's unique prefixes at batch U, then expand them to B =
        len(keys) * n rows in buffers with room for every decoding step."""
        uniq = list(dict.fromkeys(keys))
        where = {k: u for u, k in enumerate(uniq)}
        rows = _Rows(prefix=[k for k in keys for _ in range(n)],
                     parent=[None] * (len(keys) * n),
                     limit=[min(max_step_tokens, room - len(k)) for k in keys for _ in range(n)])
        B = len(rows.prefix)
        columns = max(rows.limit)  # the decoding steps feed at most max(limit) - 1 tokens
        src = torch.tensor([where[k] for k in keys], device=self.device)
        sel = torch.tensor([where[k] for k in keys for _ in range(n)], device=self.device)
        caches, masks, widths, logits, entries = [], [], [], [], []
        for lane in lanes:  # lanes may have cached different prefixes: widths differ
            cache, mask, first, lane_entries = lane._prefill(uniq)
            width = mask.shape[1]
            widths.append(width)
            full = mask.new_ones(B, width + columns)
            full[:, :width] = mask[sel]
            caches.append(_StepCache.expanded(cache, src, n, columns))
            masks.append(full)
            logits.append(first[sel])
            entries.append(lane_entries)
        rows.parent = [entries[0][where[k]] for k in keys for _ in range(n)]
        rows.steps = [[] for _ in range(B)]
        rows.logps = [0.0] * B
        rows.finished = [False] * B
        rows.carry = [""] * B
        # the companion's rows: the same step lists, chained to its own cache entries
        lane_rows = [rows] + [dataclasses.replace(rows, parent=[e[where[k]] for k in keys
                                                                for _ in range(n)])
                              for e in entries[1:]]
        pos = torch.tensor([len(p) for p in rows.prefix], dtype=torch.long, device=self.device)
        return _Batch(lanes, caches, masks, widths, logits, lane_rows, list(range(B)), pos, nb=B)

    def _record(self, batch: _Batch, tok: torch.Tensor, logp: torch.Tensor, t: int,
                room: int) -> list[int]:
        """Append the live rows' t-th tokens to their steps; a row whose step ended (EOS,
        full context: finished; delimiter or step limit: its KV remembered) leaves.
        Returns the batch positions (among the live rows) that go on."""
        rows, slots = batch.rows[0], batch.slots
        eos, delim = self.is_eos[tok.cpu()].tolist(), self.is_delim[tok.cpu()].tolist()
        keep = []
        for b, (r, x, lp) in enumerate(zip(batch.active, tok.tolist(), logp.double().tolist())):
            rows.steps[r].append(x)
            rows.logps[r] += lp
            full = len(rows.prefix[r]) + t >= room
            ended = delim[b]
            if not ended and self.step_ends.split:  # a delimiter spelt across tokens
                ended, rows.carry[r] = self.step_ends.advance(rows.carry[r], x)
            if eos[b] or full:
                rows.finished[r] = True
            elif ended or t >= rows.limit[r]:
                at = b if slots is None else slots[b]
                for lane, cache, lane_row in zip(batch.lanes, batch.caches, batch.rows):
                    lane._remember(cache, at, r, t, lane_row)
            else:
                keep.append(b)
        return keep

    def _remember(self, cache, b: int, r: int, t: int, rows: _Rows) -> None:
        """Cache the KV of prefix + step[:-1] for an unfinished step (its t-1 fed tokens
        are the last t-1 columns of batch row b), so expanding the child runs one token."""
        if self.kv.max_tokens <= 0 or t < 2:
            return
        key = rows.prefix[r] + tuple(rows.steps[r][:-1])
        self.kv.add(key, rows.parent[r], *_snapshot(cache, b, slice(-(t - 1), None)))
