"""A critic made of any local Hugging Face model (the trunk) plus a scalar head.

    score(s) = sigmoid(head(h_last(s)))   in [0, 1], for every kind

where h_last is the trunk's final hidden state (float [hidden_size]) at the LAST real
token of the state's sequence, and head is ``nn.Linear(hidden_size, 1)``. A fresh critic
starts from a causal-LM directory (``save_pretrained``): the base model is loaded with
``AutoModel`` (the LM head is dropped) and the head starts at zero, so every score is
exactly 0.5 until ``fit`` trains it. ``save`` writes trunk, tokenizer, head and
``critic.json`` into one directory, which the constructor (or ``load``) reads back.

States arrive in the POLICY's token ids; ``TokenBridge`` turns them into the critic's
ids (pass-through when the vocabularies match, re-encoded text otherwise).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

from critics.base import CriticError, State, TokenBridge, check_kind, check_scores
from treesearch.engine.interfaces import TokenCounts
from treesearch.utils.atomic import atomic_dir
from treesearch.utils.checkpoints import model_directory

FORMAT_VERSION = 1
CRITIC_FILE = "critic.json"
HEAD_FILE = "head.safetensors"


class HeadCritic:
    """Trunk + linear head critic over a local Hugging Face model (float32).

    model_dir: a causal-LM directory written by ``save_pretrained`` (fresh head, all
        scores 0.5) or a directory written by ``HeadCritic.save`` (has ``critic.json``;
        trunk and head reloaded exactly). FileNotFoundError naming the path if missing.
    kind: "value", "process" or "outcome" (may be None for a saved critic: the kind in
        critic.json is used; a different kind raises CriticError).
    policy_tokenizer: tokenizer of the states' ids (None: the critic's own).
    batch_size: rows per trunk forward in ``score``; seed: torch seed set while the head
        is built (the head starts at zero, so it only matters to subclasses).
    counts.processed: real (unpadded) tokens run through the trunk by ``score``;
    calls: number of ``score`` calls; max_positions: the trunk's context length (or None).
    """

    def __init__(self, model_dir, kind, *, policy_tokenizer=None, device="cpu",
                 batch_size: int = 64, name: str | None = None, seed: int = 0):
        path = model_directory("HeadCritic", model_dir)
        meta = _read_meta(path)
        if meta is not None:
            if kind is not None and kind != meta["kind"]:
                raise CriticError(f"HeadCritic: {str(path)!r} holds a {meta['kind']!r} critic, "
                                  f"asked for kind {kind!r}")
            kind = meta["kind"]
            name = name or meta["name"]
        self.kind = check_kind(kind, "HeadCritic")
        self.name = name or f"head-{self.kind}:{model_dir}"
        self.source = meta["trunk_source"] if meta is not None else str(model_dir)
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.counts = TokenCounts()
        self.calls = 0

        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.trunk = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        config = self.trunk.config
        self.hidden_size = config.get_text_config().hidden_size
        self.max_positions = getattr(config, "max_position_embeddings", None)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.bridge = TokenBridge(policy_tokenizer, self.tokenizer)

        torch.manual_seed(seed)
        self.head = torch.nn.Linear(self.hidden_size, 1)
        if meta is None:
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
        else:
            if meta["hidden_size"] != self.hidden_size:
                raise CriticError(f"HeadCritic: {str(path)!r}: critic.json says hidden size "
                                  f"{meta['hidden_size']}, trunk has {self.hidden_size}")
            self.head.load_state_dict(load_file(path / HEAD_FILE))
        self.trunk.to(self.device).eval()
        self.head.to(self.device).eval()

    @classmethod
    def load(cls, path, policy_tokenizer=None, device="cpu") -> "HeadCritic":
        """A critic written by ``save``; its kind and name come from critic.json."""
        path = model_directory("HeadCritic", path)
        if _read_meta(path) is None:
            raise FileNotFoundError(f"HeadCritic: {str(path / CRITIC_FILE)!r} not found "
                                    "(expected a directory written by HeadCritic.save)")
        return cls(path, None, policy_tokenizer=policy_tokenizer, device=device)

    # -- scoring ----------------------------------------------------------------------

    def score(self, states: Sequence[State]) -> np.ndarray:
        """states: N (prompt ids, step id spans) in the policy's ids -> float32 [N] in [0, 1].

        Rows are sorted by length and run batch_size at a time, right-padded with an
        attention mask; the result is in the input order. Raises CriticError naming the
        critic on a state longer than max_positions (or empty) and on a NaN/inf score.
        """
        self.calls += 1
        if len(states) == 0:
            return np.zeros(0, np.float32)
        seqs = self._encode(states)
        order = np.argsort([-len(s) for s in seqs], kind="stable")
        scores = np.empty(len(seqs), np.float64)
        with torch.inference_mode():
            for i in range(0, len(seqs), self.batch_size):
                rows = order[i:i + self.batch_size]
                ids, mask = self._pad([seqs[r] for r in rows])
                scores[rows] = torch.sigmoid(self._logits(ids, mask)).double().cpu().numpy()
                self.counts.processed += int(mask.sum())
        return check_scores(self.name, scores, len(states))

    def _encode(self, states: Sequence[State]) -> list[list[int]]:
        """Each state as the critic's token ids, checked against max_positions."""
        seqs = [self.bridge.encode(s) for s in states]
        for i, seq in enumerate(seqs):
            if not seq:
                raise CriticError(f"critic {self.name}: state {i} is empty (no tokens)")
            if self.max_positions is not None and len(seq) > self.max_positions:
                raise CriticError(
                    f"critic {self.name}: state {i} has {len(seq)} tokens, more than the "
                    f"trunk's limit of {self.max_positions} positions (max_position_embeddings)")
        return seqs

    def _pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and attention mask, both long [B, max length], on the device."""
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for b, seq in enumerate(seqs):
            ids[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[b, :len(seq)] = 1
        return ids.to(self.device), mask.to(self.device)

    def _logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Head logits float32 [B] at each row's last real token (ids, mask long [B, T])."""
        hidden = self.trunk(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, H]
        last = mask.sum(1) - 1
        h_last = hidden[torch.arange(len(ids), device=ids.device), last]  # [B, H]
        return self.head(h_last.float()).squeeze(-1)

    # -- training ---------------------------------------------------------------------

    def fit(self, states: Sequence[State], targets, *, epochs: int = 3, lr: float = 1e-3,
            batch_size: int = 32, weights=None, train_trunk: bool = True, seed: int = 0,
            progress: bool = False) -> dict:
        """Train on soft targets float [N] in [0, 1] with binary cross-entropy (AdamW).

        weights: optional float [N] >= 0 per-example loss weights (normalised to mean 1).
        Mini-batches of batch_size are shuffled by a torch.Generator seeded with ``seed``
        (deterministic on CPU). train_trunk=False trains the head only. Losses reported
        are weighted mean BCE per example (nats) over an epoch; seconds is wall time.
        The model is left in eval mode. ValueError on bad targets or weights.
        """
        n = len(states)
        y, w = _fit_inputs(n, targets, weights, epochs, batch_size)
        seqs = self._encode(states)
        y = torch.tensor(y, dtype=torch.float32, device=self.device)
        w = torch.tensor(w / w.mean(), dtype=torch.float32, device=self.device)

        frozen = [p for p in self.trunk.parameters() if p.requires_grad] if not train_trunk else []
        for p in frozen:
            p.requires_grad_(False)
        params = [p for p in [*self.trunk.parameters(), *self.head.parameters()] if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr)
        gen = torch.Generator().manual_seed(int(seed))
        self.trunk.train(train_trunk)
        self.head.train()
        start, losses = time.perf_counter(), []
        bar = _progress(epochs * -(-n // batch_size), progress)
        try:
            for _ in range(epochs):
                total = 0.0
                for rows in torch.randperm(n, generator=gen).split(batch_size):
                    ids, mask = self._pad([seqs[r] for r in rows.tolist()])
                    rows = rows.to(self.device)
                    bce = F.binary_cross_entropy_with_logits(self._logits(ids, mask), y[rows],
                                                             reduction="none")
                    loss = (w[rows] * bce).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(rows)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                losses.append(total / n)
        finally:
            for p in frozen:
                p.requires_grad_(True)
            self.trunk.eval()
            self.head.eval()
            if bar is not None:
                bar.close()
        return {"loss_first_epoch": losses[0], "loss_last_epoch": losses[-1], "examples": n,
                "epochs": epochs, "seconds": time.perf_counter() - start}

    # -- saving -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write trunk, tokenizer, head and critic.json to ``path``, atomically.

        Everything goes to a temporary sibling directory first, which is renamed into
        place; an existing critic directory at ``path`` is replaced only then. Refuses
        (FileExistsError) to replace anything that is not a saved critic.
        """
        path = Path(os.fspath(path)).expanduser()
        if path.exists() and not (path.is_dir() and (_read_meta(path) is not None
                                                     or not any(path.iterdir()))):
            raise FileExistsError(f"HeadCritic.save: {str(path)!r} exists and is not a saved "
                                  "critic")
        with atomic_dir(path) as tmp:
            self.trunk.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                      tmp / HEAD_FILE)
            meta = {"format": FORMAT_VERSION, "kind": self.kind, "name": self.name,
                    "hidden_size": self.hidden_size, "trunk_source": self.source}
            (tmp / CRITIC_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path

    def describe(self) -> str:
        params = sum(p.numel() for p in self.trunk.parameters()) + sum(
            p.numel() for p in self.head.parameters())
        dtype = str(next(self.trunk.parameters()).dtype).replace("torch.", "")
        return (f"head critic kind={self.kind} trunk={self.source} "
                f"({type(self.trunk).__name__}) params={params / 1e6:.2f}M "
                f"device={self.device} dtype={dtype}")


def _read_meta(path: Path) -> dict | None:
    """critic.json of a saved critic directory, or None when there is none."""
    file = path / CRITIC_FILE
    if not file.is_file():
        return None
    meta = json.loads(file.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise CriticError(f"HeadCritic: {str(file)!r} has format {meta.get('format')!r}, "
                          f"this code reads format {FORMAT_VERSION}")
    return meta


def _fit_inputs(n: int, targets, weights, epochs: int, batch_size: int):
    """``HeadCritic.fit``'s checked inputs: (targets float [n] in [0, 1], weights float [n]
    >= 0 with a positive sum, ones when None); ValueError naming what is wrong."""
    y = _check_vector("targets", targets, n)
    if ((y < 0) | (y > 1)).any():
        raise ValueError(f"HeadCritic.fit: targets must lie in [0, 1], got min {y.min()}, "
                         f"max {y.max()}")
    w = np.ones(n) if weights is None else _check_vector("weights", weights, n)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("HeadCritic.fit: weights must be >= 0 with a positive sum")
    if n == 0 or epochs < 1 or batch_size < 1:
        raise ValueError(f"HeadCritic.fit: need examples, epochs >= 1 and batch_size >= 1, "
                         f"got {n}, {epochs}, {batch_size}")
    return y, w


def _check_vector(what: str, values, n: int) -> np.ndarray:
    """values as float64 [n], finite; ValueError naming ``what`` otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"HeadCritic.fit: {what} has shape {arr.shape}, expected ({n},) "
                         "(one per state)")
    if not np.isfinite(arr).all():
        raise ValueError(f"HeadCritic.fit: {what} contain NaN or inf")
    return arr


def _progress(total: int, enabled: bool):
    if not enabled:
        return None

    return tqdm(total=total, desc="fit critic", unit="batch")
