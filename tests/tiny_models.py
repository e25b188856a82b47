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
