"""Tokenizers for the tiny priors, and which token ids end a reasoning step.

The tiny priors read one character per token: a ``tokenizers`` WordLevel model over a
fixed character vocabulary, behind a pre-tokenizer that splits the text into single
characters, wrapped as a ``transformers.PreTrainedTokenizerFast``. It saves with
``save_pretrained`` and reloads with ``AutoTokenizer.from_pretrained`` like any other
Hugging Face tokenizer (and vLLM loads it the same way).

No special token is added automatically: ``tokenizer("12+3")["input_ids"]`` has one id
per character, and callers prepend ``tokenizer.bos_token_id`` themselves. A character
outside the vocabulary is an error (there is no unknown token on purpose: a silent
``<unk>`` would hide a task/tokenizer mismatch).
"""

from __future__ import annotations

import string
from typing import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
# Arithmetic, countdown and answer lines ("25*4=100", "A:(25*4)+7"): digits, operators,
# brackets, space, newline, and the letters a task may use as markers.
ARITHMETIC_CHARS = "0123456789+-*/()= \n"
DEFAULT_CHARS = ARITHMETIC_CHARS + ":.," + string.ascii_letters


def char_vocab(chars: Iterable[str] = DEFAULT_CHARS) -> dict[str, int]:
    """Token -> id: the special tokens first (pad 0, bos 1, eos 2), then each char once."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        if len(ch) != 1:
            raise ValueError(f"char_vocab: {ch!r} is not a single character")
        vocab.setdefault(ch, len(vocab))
    return vocab


def build_char_tokenizer(chars: Iterable[str] = DEFAULT_CHARS, model_max_length: int = 1 << 16):
    """A character-level ``PreTrainedTokenizerFast`` (one token per character).

    chars: the characters of the vocabulary (duplicates ignored); ids follow
        ``char_vocab``. Returns a tokenizer with pad/bos/eos set, decoding without
        inserted spaces (``decode(encode(s)) == s``).
    """
    vocab = char_vocab(chars)
    # No unk_token: an out-of-vocabulary character raises instead of becoming <unk>.
    core = Tokenizer(models.WordLevel(vocab=vocab))
    # "[\s\S]" matches every single character, newline included (Oniguruma regex).
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()  # join tokens with nothing between them
    pad, bos, eos = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=pad, bos_token=bos, eos_token=eos,
        model_max_length=model_max_length, clean_up_tokenization_spaces=False)


def _tokenizer_name(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__


def step_delimiter_ids(tokenizer, delimiter: str = "\n") -> frozenset[int]:
    """Token ids after which a step ends: every id whose decoded text contains ``delimiter``.

    For a character tokenizer this is the one id of the delimiter. For BPE tokenizers
    (SmolLM2, GPT-2 style) the delimiter is often merged with other characters into
    tokens such as "\\n\\n", ".\\n" or " \\n"; the step then ends at any of them, and any
    text of that token after the delimiter stays with the step that ends there (GPT-2
    style pre-tokenizers keep newline runs in tokens of their own, so this is rare).
    Special tokens (EOS and friends) are never included; callers stop at EOS apart.

    A delimiter split across several tokens (e.g. "\\n\\n" written as two "\\n" tokens)
    is not detected: stopping is decided one token at a time.

    Raises ValueError naming the tokenizer when no single token contains the delimiter.
    """
    if not delimiter:
        raise ValueError(f"step delimiter for tokenizer {_tokenizer_name(tokenizer)!r} is empty")
    n_vocab = len(tokenizer)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    texts = tokenizer.batch_decode([[i] for i in range(n_vocab)],
                                   skip_special_tokens=False, clean_up_tokenization_spaces=False)
    ids = frozenset(i for i, text in enumerate(texts) if delimiter in text and i not in special)
    if not ids:
        raise ValueError(
            f"step delimiter {delimiter!r} is not contained in any single token of tokenizer "
            f"{_tokenizer_name(tokenizer)!r} (vocabulary of {n_vocab}); steps could never end on it")
    return ids
