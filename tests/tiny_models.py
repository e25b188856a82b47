"""A tiny random Llama with the character tokenizer, saved like any local checkpoint."""

from __future__ import annotations

import torch
import transformers

from policies.tokenization import build_char_tokenizer


def save_tiny_llama(path, hidden_size: int, max_positions: int, seed: int = 0):
    """Write a random 2-layer LlamaForCausalLM (4 heads, 2 KV heads, head_dim =
    hidden_size / 4) and its character tokenizer to ``path``; returns ``path``."""
    tok = build_char_tokenizer()
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, initializer_range=0.3)
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def step_endings(proposals, delimiter_id: int, eos_id: int, max_step_tokens: int) -> list[str]:
    """Check the step-boundary contract on ``propose`` output; returns each step's ending.

    A step holds no delimiter or EOS before its last token, ends on one of them or at
    max_step_tokens, and is ``finished`` exactly when it ends on EOS.
    """
    ends = []
    for props in proposals:
        for p in props:
            body = p.tokens[:-1].tolist()
            assert delimiter_id not in body and eos_id not in body
            last = int(p.tokens[-1])
            assert last in (delimiter_id, eos_id) or p.n_tokens == max_step_tokens
            assert p.finished == (last == eos_id)
            ends.append("nl" if last == delimiter_id else "eos" if last == eos_id else "limit")
    return ends
