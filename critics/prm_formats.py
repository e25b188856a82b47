"""Published process reward models: their step formats, how to tell them apart, and where
their score is read.

A PRM was trained to read a solution in ONE layout and to answer at ONE kind of position;
``PRMFormat.render`` writes a state in that layout and says where to read (one position
per step). Four formats (``FORMATS``):

    math-shepherd  a causal LM. "<problem> Step 1: <s1> ки\\nStep 2: <s2> ки" (<bos> first);
                   read at every " ки" tag: P(+) = softmax(logit "+", logit "-")[0].
                   (peiyi9979/math-shepherd-mistral-7b-prm)
    qwen-prm       ``Qwen2ForProcessRewardModel``: a Qwen2 trunk and a 2-class head
                   (Linear, ReLU, Linear). The chat template over a system turn, the
                   problem as the user turn and "<s1><extra_0><s2><extra_0>" as the
                   assistant turn; read at every ``<extra_0>``: P(positive) = softmax[1].
                   (Qwen/Qwen2.5-Math-PRM-7B)
    rlhflow        a causal LM with a chat template: the problem and step 1 as the first
                   user turn, each later step a user turn of its own, every assistant
                   turn "+"; read where the assistant's answer is predicted (the last
                   token of the generation prompt): P(+) = softmax(logit "+", logit "-")[0].
                   (RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data)
    value-head     a trunk and a scalar value head ``v_head.summary`` (Linear(hidden, 1)):
                   "<bos><problem>\\n<s1>\\n<s2>\\n", each piece encoded on its own; read at
                   every step's "\\n": sigmoid(v_head(h)).
                   (Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B and -7B)

Our steps arrive as text ending in the task's step delimiter (``task_options.
step_delimiter``); ``clean_step`` drops it and the surrounding blanks, and where a format
separates steps by a newline ("\\n" in math-shepherd and value-head) a newline inside a
step becomes a space, so every step is one step to the PRM.

``detect`` names the format of a checkpoint from its files (architecture, weight names,
tokenizer, chat template); ``check`` refuses a checkpoint that a given format cannot read
(no tag or verdict token, no LM head, no 2-class or value head, no chat template), naming
what is missing. ``KNOWN`` lists published PRMs by short name (``prm:qwen2.5-math-prm-7b``),
each with its Hugging Face repository and format; ``find_known`` finds one in the local
Hugging Face cache and never downloads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from critics.base import CriticError

FORMATS = ("math-shepherd", "qwen-prm", "rlhflow", "value-head")
# how each format's score is computed from the trunk's hidden state h at a read position
HEADS = {"math-shepherd": "verdict", "rlhflow": "verdict", "qwen-prm": "two_class",
         "value-head": "scalar"}
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QWEN_PRM_ARCHS = ("Qwen2ForProcessRewardModel",)
VALUE_HEAD_ARCHS = ("Qwen2ForPrmModel", "LlamaForPrmModel")
TWO_CLASS_WEIGHTS = ("score.0.weight", "score.2.weight")
VALUE_HEAD_WEIGHT = "v_head.summary.weight"


@dataclass(frozen=True)
class KnownPRM:
    repo: str  # the Hugging Face repository
    format: str


KNOWN = {
    "math-shepherd-mistral-7b": KnownPRM("peiyi9979/math-shepherd-mistral-7b-prm",
                                         "math-shepherd"),
    "qwen2.5-math-prm-7b": KnownPRM("Qwen/Qwen2.5-Math-PRM-7B", "qwen-prm"),
    "rlhflow-llama3.1-8b-prm-deepseek": KnownPRM("RLHFlow/Llama3.1-8B-PRM-Deepseek-Data",
                                                 "rlhflow"),
    "rlhflow-llama3.1-8b-prm-mistral": KnownPRM("RLHFlow/Llama3.1-8B-PRM-Mistral-Data",
                                                "rlhflow"),
    "skywork-o1-prm-1.5b": KnownPRM("Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B", "value-head"),
    "skywork-o1-prm-7b": KnownPRM("Skywork/Skywork-o1-Open-PRM-Qwen-2.5-7B", "value-head"),
}


def known_prm(name: str) -> KnownPRM | None:
    """The entry of ``KNOWN`` for a short name or its repository id, else None."""
    if name in KNOWN:
        return KNOWN[name]
    return next((k for k in KNOWN.values() if k.repo == name), None)


def find_known(name: str) -> Path | None:
    """The local snapshot of a known PRM (short name or repository id) in the Hugging Face
    cache; None when ``name`` is not a known PRM or is a local directory. A known PRM that
    was never downloaded raises FileNotFoundError with the command that fetches it."""
    entry = known_prm(name)
    if entry is None or Path(name).expanduser().is_dir():
        return None
    from huggingface_hub import snapshot_download  # lazy: only for published PRM names

    try:
        return Path(snapshot_download(entry.repo, local_files_only=True))
    except Exception as exc:  # LocalEntryNotFoundError, offline mode, no cache
        raise FileNotFoundError(
            f"PRM {name!r} ({entry.repo}, format {entry.format}) is not in the local Hugging "
            f"Face cache ({type(exc).__name__}); nothing is downloaded at run time: fetch it "
            f"once with `hf download {entry.repo}` (or pass its directory)") from None


# ----------------------------------------------------------------------------- checkpoint files

@dataclass
class Checkpoint:
    """What a checkpoint directory says about itself, read without loading weights.

    path; config: config.json as a dict; tokenizer: its tokenizer; weights: the tensor
    names its weight files hold (from the safetensors headers or the index)."""

    path: Path
    config: dict
    tokenizer: object
    weights: frozenset

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def is_causal_lm(self) -> bool:
        return any(a.endswith("ForCausalLM") for a in self.architectures)

    @property
    def max_positions(self) -> int | None:
        text = self.config.get("text_config") or self.config
        return text.get("max_position_embeddings")

    def describe(self) -> str:
        return f"{str(self.path)!r} (architectures {self.architectures or 'none'})"


def read_checkpoint(path: Path, tokenizer=None) -> Checkpoint:
    """``Checkpoint`` of ``path`` (its tokenizer loaded unless given)."""
    from transformers import AutoTokenizer  # lazy: keeps this module light for config checks

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    tok = tokenizer or AutoTokenizer.from_pretrained(path, local_files_only=True)
    return Checkpoint(path, config, tok, frozenset(weight_names(path)))


def weight_files(path: Path) -> dict[str, Path]:
    """{tensor name: file} from an index (safetensors or .bin), else every ``*.safetensors``
    file's header; a lone ``pytorch_model.bin`` maps ``"*"`` to itself (names unknown
    until it is loaded)."""
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            mapping = json.loads((path / index).read_text(encoding="utf-8"))["weight_map"]
            return {name: path / file for name, file in mapping.items()}
    out = {}
    from safetensors import safe_open  # lazy: only when weights are listed

    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            out.update({name: file for name in f.keys()})
    if not out and (path / "pytorch_model.bin").is_file():
        out["*"] = path / "pytorch_model.bin"
    return out


def weight_names(path: Path) -> list[str]:
    files = weight_files(path)
    if list(files) == ["*"]:
        return list(torch.load(files["*"], map_location="cpu", mmap=True, weights_only=True))
    return list(files)


def read_tensors(path: Path, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The named tensors of the checkpoint at ``path`` (float as stored), loaded alone."""
    files, out = weight_files(path), {}
    from safetensors import safe_open  # lazy: only when a head is loaded

    for name in names:
        file = files.get(name, files.get("*"))
        if file is None:
            continue
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as f:
                out[name] = f.get_tensor(name)
        else:
            out[name] = torch.load(file, map_location="cpu", mmap=True, weights_only=True)[name]
    return out


# ----------------------------------------------------------------------------- text helpers

def clean_step(text: str, delimiter: str, flatten: bool) -> str:
    """A step's text for a PRM: the task's step delimiter dropped from its end, blanks
    stripped; with ``flatten`` (the PRM separates steps by newlines) newlines inside it
    become spaces."""
    if delimiter and text.endswith(delimiter):
        text = text[:-len(delimiter)]
    text = text.strip()
    return " ".join(text.split("\n")) if flatten else text


def _ids(tokenizer, text: str, special: bool = False) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=special)["input_ids"]]


def _chat_ids(tokenizer, messages, generation: bool) -> list[int]:
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=generation,
                                        tokenize=True)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return [int(i) for i in ids]


def _single_token(tokenizer, text: str, what: str, fmt: str, where: Checkpoint) -> int:
    """The id of the token ``text`` encodes to last (BPE/SentencePiece may put a space
    marker on it), refused unless that token decodes to ``text`` alone."""
    try:
        ids = _ids(tokenizer, text)
    except Exception:  # a character tokenizer without the character
        ids = []
    if ids:
        got = tokenizer.decode([ids[-1]], skip_special_tokens=False,
                               clean_up_tokenization_spaces=False)
        if got == text.lstrip(" ") or (text.strip() and got.strip() == text.strip()):
            return ids[-1]
    raise CriticError(f"PRM format {fmt}: the tokenizer of {where.describe()} has no "
                      f"{what} token {text.strip()!r} (it encodes to {ids}); this "
                      f"checkpoint is not a {fmt} PRM")


@dataclass(frozen=True)
class Rendered:
    """A state in a PRM's format: ids int [T] (the PRM's token ids) and read int [K] (the
    position whose score is step k's, ascending, one per step)."""

    ids: list[int]
    read: list[int]


# ----------------------------------------------------------------------------- the formats

class PRMFormat:
    """One format: ``check`` a checkpoint, then ``render`` (problem, steps) -> Rendered.

    Attributes after ``check``: ``verdict`` (good id, bad id) for the verdict heads, ``tag``
    (the tag id, or None), ``flatten`` (newlines inside a step become spaces)."""

    name = ""
    flatten = False

    def __init__(self):
        self.tokenizer = None
        self.verdict: tuple[int, int] | None = None
        self.tag: int | None = None

    def check(self, ckpt: Checkpoint) -> None:
        raise NotImplementedError

    def render(self, problem: str, steps: Sequence[str]) -> Rendered:
        raise NotImplementedError

    def _refuse(self, ckpt: Checkpoint, why: str):
        raise CriticError(f"PRM format {self.name}: {ckpt.describe()} {why}; this checkpoint "
                          f"is not a {self.name} PRM (detected: {detect_name(ckpt)})")

    def _tagged(self, ids: list[int], steps: Sequence[str]) -> Rendered:
        read = [j for j, t in enumerate(ids) if t == self.tag]
        if len(read) != len(steps):
            raise CriticError(f"PRM format {self.name}: the state holds the step tag "
                              f"{self.tokenizer.decode([self.tag])!r} {len(read)} times for "
                              f"{len(steps)} steps (does the problem or a step contain it?)")
        return Rendered(ids, read)


class MathShepherd(PRMFormat):
    name, flatten = "math-shepherd", True
    TAG, GOOD, BAD = " ки", "+", "-"

    def check(self, ckpt: Checkpoint) -> None:
        if not ckpt.is_causal_lm:
            self._refuse(ckpt, "is not a causal LM (its '+'/'-' logits are read)")
        tok = self.tokenizer = ckpt.tokenizer
        self.tag = _single_token(tok, self.TAG, "step tag", self.name, ckpt)
        self.verdict = (_single_token(tok, self.GOOD, "verdict", self.name, ckpt),
                        _single_token(tok, self.BAD, "verdict", self.name, ckpt))

    def render(self, problem: str, steps: Sequence[str]) -> Rendered:
        text = problem + " " + "\n".join(f"Step {i}: {s}{self.TAG}"
                                         for i, s in enumerate(steps, 1))
        return self._tagged(_with_bos(self.tokenizer, _ids(self.tokenizer, text, True)), steps)


class QwenPRM(PRMFormat):
    name = "qwen-prm"
    TAG = "<extra_0>"

    def check(self, ckpt: Checkpoint) -> None:
        has_head = all(w in ckpt.weights for w in TWO_CLASS_WEIGHTS)
        if not has_head:
            self._refuse(ckpt, f"has no 2-class head ({', '.join(TWO_CLASS_WEIGHTS)})")
        tok = self.tokenizer = ckpt.tokenizer
        if self.TAG not in tok.get_vocab():
            raise CriticError(f"PRM format {self.name}: the tokenizer of {ckpt.describe()} has "
                              f"no step tag token {self.TAG!r}")
        if not getattr(tok, "chat_template", None):
            raise CriticError(f"PRM format {self.name}: the tokenizer of {ckpt.describe()} has "
                              "no chat template")
        self.tag = tok.convert_tokens_to_ids(self.TAG)

    def render(self, problem: str, steps: Sequence[str]) -> Rendered:
        messages = [{"role": "system", "content": QWEN_SYSTEM},
                    {"role": "user", "content": problem},
                    {"role": "assistant", "content": "".join(s + self.TAG for s in steps)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=False)
        return self._tagged(_ids(self.tokenizer, text, True), steps)


class RLHFlow(PRMFormat):
    name = "rlhflow"
    GOOD, BAD = "+", "-"

    def check(self, ckpt: Checkpoint) -> None:
        if not ckpt.is_causal_lm:
            self._refuse(ckpt, "is not a causal LM (its '+'/'-' logits are read)")
        tok = self.tokenizer = ckpt.tokenizer
        if not getattr(tok, "chat_template", None):
            self._refuse(ckpt, "has no chat template (each step is a user turn)")
        self.verdict = (_single_token(tok, self.GOOD, "verdict", self.name, ckpt),
                        _single_token(tok, self.BAD, "verdict", self.name, ckpt))
        self._starts: dict[tuple, int] = {}

    def conversation(self, problem: str, steps: Sequence[str]) -> list[dict]:
        turns = []
        for k, step in enumerate(steps):
            turns.append({"role": "user", "content": f"{problem} {step}" if k == 0 else step})
            turns.append({"role": "assistant", "content": self.GOOD})
        return turns

    def render(self, problem: str, steps: Sequence[str]) -> Rendered:
        turns = self.conversation(problem, steps)
        ids = _chat_ids(self.tokenizer, turns, generation=False)
        read = [self._answer_at(problem, tuple(steps[:k + 1]), turns[:2 * k + 1], ids)
                for k in range(len(steps))]
        return Rendered(ids, read)

    def _answer_at(self, problem: str, steps: tuple, turns: list, ids: list[int]) -> int:
        """Position of the last generation-prompt token before step k's verdict (its
        logits predict the verdict), memoised per (problem, steps so far)."""
        key = (problem, steps)
        if key not in self._starts:
            if len(self._starts) > 1 << 14:
                self._starts.clear()
            asked = _chat_ids(self.tokenizer, turns, generation=True)
            # -1: a template that renders a turn differently once later turns follow
            self._starts[key] = len(asked) - 1 if ids[:len(asked)] == asked else -1
        at = self._starts[key]
        if at < 0 or at + 1 >= len(ids) or ids[at + 1] != self.verdict[0]:
            raise CriticError(f"PRM format {self.name}: the chat template does not put the "
                              "assistant's verdict right after its generation prompt (step "
                              f"{len(steps)}), so there is no position to read")
        return at


class ValueHead(PRMFormat):
    name, flatten = "value-head", True
    STEP = "\n"

    def check(self, ckpt: Checkpoint) -> None:
        if VALUE_HEAD_WEIGHT not in ckpt.weights:
            self._refuse(ckpt, f"has no scalar value head ({VALUE_HEAD_WEIGHT})")
        self.tokenizer = ckpt.tokenizer
        self.tag = _single_token(ckpt.tokenizer, self.STEP, "step", self.name, ckpt)

    def render(self, problem: str, steps: Sequence[str]) -> Rendered:
        tok = self.tokenizer
        ids = _ids(tok, (tok.bos_token or "") + problem + "\n", True)
        read = []
        for step in steps:
            ids += (_ids(tok, step) if step else []) + [self.tag]
            read.append(len(ids) - 1)
        return Rendered(ids, read)


_CLASSES = {c.name: c for c in (MathShepherd, QwenPRM, RLHFlow, ValueHead)}


def _with_bos(tokenizer, ids: list[int]) -> list[int]:
    bos = getattr(tokenizer, "bos_token_id", None)
    return ids if bos is None or (ids and ids[0] == bos) else [bos] + ids


# ----------------------------------------------------------------------------- detection

def detect_name(ckpt: Checkpoint) -> str:
    """The format a checkpoint's files say it has, with the reason, or 'none' with why."""
    archs = set(ckpt.architectures)
    if archs & set(QWEN_PRM_ARCHS) or all(w in ckpt.weights for w in TWO_CLASS_WEIGHTS):
        return "qwen-prm (a 2-class head)"
    if archs & set(VALUE_HEAD_ARCHS) or VALUE_HEAD_WEIGHT in ckpt.weights:
        return "value-head (a scalar value head)"
    if ckpt.is_causal_lm:
        if getattr(ckpt.tokenizer, "chat_template", None):
            return "rlhflow (a causal LM with a chat template)"
        return "math-shepherd (a causal LM without a chat template)"
    return "none (no LM head, 2-class head or value head)"


def detect(ckpt: Checkpoint) -> str:
    """The format name of ``ckpt`` (``detect_name``), CriticError when none fits."""
    name = detect_name(ckpt).split(" ")[0]
    if name not in FORMATS:
        raise CriticError(f"cannot tell the PRM format of {ckpt.describe()}: "
                          f"{detect_name(ckpt)}; name it with critics.prm_format (one of "
                          f"{', '.join(FORMATS)})")
    return name


def check_format_name(name) -> str | None:
    """None or '' (detect), or one of ``FORMATS``; CriticError listing them otherwise."""
    if name in (None, ""):
        return None
    if name not in FORMATS:
        raise CriticError(f"unknown PRM format {name!r}; known: {', '.join(FORMATS)} "
                          "(or empty: detected from the checkpoint)")
    return name


def open_format(ckpt: Checkpoint, name: str | None = None) -> PRMFormat:
    """The checked format adapter for ``ckpt``: ``name`` (one of ``FORMATS``), or the
    detected one when None. CriticError naming what the checkpoint lacks."""
    name = check_format_name(name) or detect(ckpt)
    fmt = _CLASSES[name]()
    fmt.check(ckpt)
    return fmt


def inspect(model_dir, prm_format: str | None = None) -> str:
    """Check, from its files only (no weights loaded), that ``model_dir`` can be read as a
    PRM of ``prm_format`` (None: detected); returns the format name."""
    path = Path(os.fspath(model_dir)).expanduser()
    return open_format(read_checkpoint(path), prm_format).name
