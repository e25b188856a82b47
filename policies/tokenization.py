"""Tokenizers for the tiny priors, and where a reasoning step ends (``StepEnds``,
``step_delimiter_ids``).

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


def token_texts(tokenizer) -> list[str]:
    """The decoded text of every token id on its own (special tokens: "")."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))],
                                   skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return ["" if i in special else text for i, text in enumerate(texts)]


class StepEnds:
    """Where a step ends, token by token, for any tokenizer: at the first token after
    which the step's text contains ``delimiter``, whether one token holds the whole
    delimiter ("\\n\\n" in SmolLM2's BPE) or several tokens spell it ("\\n" then "\\n"
    in the same BPE, or a character tokenizer).

        ends = StepEnds(tokenizer, "\\n\\n")
        carry = ""                                   # per sampled row, at the step's start
        done, carry = ends.advance(carry, token_id)  # after each sampled token

    ``whole``: ids whose own text contains the delimiter (the step ends on them whatever
    came before; ``step_delimiter_ids``). ``carry`` is the end of the step's text that
    could still become the delimiter (a proper prefix of it, "" for a one-character
    delimiter, where ``advance`` is the ``whole`` lookup alone). Special tokens never
    count (callers stop at EOS apart). Per-token texts are decoded one token at a time,
    which is exact for newline runs in byte-level BPE and character vocabularies.

    Raises ValueError naming the tokenizer when no token sequence can spell the delimiter.
    """

    def __init__(self, tokenizer, delimiter: str = "\n"):
        if not delimiter:
            raise ValueError(f"step delimiter for tokenizer {_tokenizer_name(tokenizer)!r} "
                             "is empty")
        self.delimiter = delimiter
        self.texts = token_texts(tokenizer)
        self.whole = frozenset(i for i, t in enumerate(self.texts) if delimiter in t)
        self.prefixes = tuple(delimiter[:k] for k in range(len(delimiter) - 1, 0, -1))
        # a delimiter of several characters can be spelt across tokens when some token ends
        # in a proper prefix of it
        self.split = (any(t.endswith(self.prefixes) for t in self.texts if t)
                      if self.prefixes else False)
        if not self.whole and not self.split:
            raise ValueError(
                f"step delimiter {delimiter!r} cannot be written by tokenizer "
                f"{_tokenizer_name(tokenizer)!r} (vocabulary of {len(self.texts)}): no token "
                "contains it or ends in a part of it; steps could never end on it")

    def advance(self, carry: str, token: int) -> tuple[bool, str]:
        """(whether the step ends after ``token``, the new carry). ``carry`` is "" at the
        start of a step."""
        if token in self.whole:
            return True, ""
        if not self.split or not 0 <= token < len(self.texts):
            return False, ""
        text = carry + self.texts[token]
        if self.delimiter in text:
            return True, ""
        return False, next((p for p in self.prefixes if text.endswith(p)), "")


def step_delimiter_ids(tokenizer, delimiter: str = "\n") -> frozenset[int]:
    """Token ids after which a step ends: every id whose decoded text contains ``delimiter``.

    For a character tokenizer this is the one id of the delimiter. For BPE tokenizers
    (SmolLM2, GPT-2 style) the delimiter is often merged with other characters into
    tokens such as "\\n\\n", ".\\n" or " \\n"; the step then ends at any of them, and any
    text of that token after the delimiter stays with the step that ends there (GPT-2
    style pre-tokenizers keep newline runs in tokens of their own, so this is rare).
    Special tokens (EOS and friends) are never included; callers stop at EOS apart.

    A delimiter split across several tokens (e.g. "\\n\\n" written as two "\\n" tokens)
    is not in this set: ``StepEnds`` follows the text across tokens for that.

    Raises ValueError naming the tokenizer when no single token contains the delimiter.
    """
    if not delimiter:
        raise ValueError(f"step delimiter for tokenizer {_tokenizer_name(tokenizer)!r} is empty")
    texts = token_texts(tokenizer)
    ids = frozenset(i for i, text in enumerate(texts) if delimiter in text)
    if not ids:
        raise ValueError(
            f"step delimiter {delimiter!r} is not contained in any single token of tokenizer "
            f"{_tokenizer_name(tokenizer)!r} (vocabulary of {len(texts)}); steps could "
            "never end on it")
    return ids
