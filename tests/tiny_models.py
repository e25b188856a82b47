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


# ----------------------------------------------------------------------------- tiny PRMs
# One random checkpoint per published PRM format (critics.prm_formats), each with a
# character tokenizer carrying its format's tag tokens and, where the format has one, a
# chat template of the published model's shape.

PRM_CHARS = "\\{}"  # beyond the policy's characters: the qwen-prm system prompt's
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
          "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
          "{% endif %}")
PRM_FORMAT_NAMES = ("math-shepherd", "qwen-prm", "rlhflow", "value-head")


def prm_tokenizer(fmt: str):
    """The tokenizer of a tiny ``fmt`` PRM. math-shepherd and rlhflow: the policy's
    characters (one token each) and their tags, rlhflow with a Llama-3-style chat template.
    qwen-prm and value-head: a byte-level BPE of Qwen2's shape (``Qwen2Tokenizer``: one
    token per byte, no merges), which is what transformers builds for any qwen2
    checkpoint; qwen-prm with ChatML and ``<extra_0>``."""
    from policies.tokenization import DEFAULT_CHARS

    if fmt in ("qwen-prm", "value-head"):
        from tokenizers.pre_tokenizers import ByteLevel
        from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

        vocab = {"<|endoftext|>": 0}
        for ch in sorted(ByteLevel.alphabet()):
            vocab[ch] = len(vocab)
        tok = Qwen2Tokenizer(vocab=vocab, merges=[])
        if fmt == "qwen-prm":
            tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>",
                                                                  "<extra_0>"]})
            tok.chat_template = CHATML
        return tok
    tok = build_char_tokenizer(DEFAULT_CHARS + PRM_CHARS)
    if fmt == "math-shepherd":
        tok.add_tokens(["ки"])
    elif fmt == "rlhflow":
        tok.add_special_tokens({"additional_special_tokens": [
            "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
        tok.chat_template = LLAMA3
    return tok


def _trunk_config(cls, tok, hidden_size: int, max_positions: int, **extra):
    return cls(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=max_positions, bos_token_id=tok.bos_token_id,
               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id or 0,
               initializer_range=0.3, **extra)


def save_tiny_prm(path, fmt: str, hidden_size: int = 32, max_positions: int = 1024,
                  seed: int = 0, tokenizer=None):
    """Write a random tiny PRM of format ``fmt`` and its tokenizer to ``path``:

    math-shepherd  MistralForCausalLM, tokenizer with the " ки" tag, no chat template
    rlhflow        LlamaForCausalLM, tokenizer with a Llama-3-style chat template
    qwen-prm       Qwen2ForProcessRewardModel: Qwen2 trunk weights under "model." and the
                   2-class head "score.0" (Linear), ReLU, "score.2" (Linear(hidden, 2))
    value-head     Qwen2ForPrmModel: trunk under "model.", "lm_head" and the value head
                   "v_head.summary" (Linear(hidden, 1))

    Returns ``path``."""
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(path)
    tok = tokenizer or prm_tokenizer(fmt)
    torch.manual_seed(seed)
    if fmt in ("math-shepherd", "rlhflow"):
        cls, model_cls = ((transformers.MistralConfig, transformers.MistralForCausalLM)
                          if fmt == "math-shepherd"
                          else (transformers.LlamaConfig, transformers.LlamaForCausalLM))
        extra = {"sliding_window": None} if fmt == "math-shepherd" else {}
        config = _trunk_config(cls, tok, hidden_size, max_positions, **extra)
        model_cls(config).save_pretrained(path)
        tok.save_pretrained(path)
        return path
    config = _trunk_config(transformers.Qwen2Config, tok, hidden_size, max_positions,
                           tie_word_embeddings=False)
    trunk = transformers.Qwen2Model(config)
    tensors = {f"model.{k}": v.contiguous() for k, v in trunk.state_dict().items()}
    std = 0.3
    if fmt == "qwen-prm":
        config.architectures = ["Qwen2ForProcessRewardModel"]
        config.num_labels = 2
        shapes = {"score.0": (hidden_size, hidden_size), "score.2": (2, hidden_size)}
    else:
        config.architectures = ["Qwen2ForPrmModel"]
        shapes = {"lm_head": (len(tok), hidden_size), "v_head.summary": (1, hidden_size)}
    for name, shape in shapes.items():
        tensors[f"{name}.weight"] = torch.randn(shape) * std
        if name != "lm_head":
            tensors[f"{name}.bias"] = torch.randn(shape[0]) * std
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(path)
    tok.save_pretrained(path)
    return path
