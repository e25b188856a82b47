"""Local model checkpoints: the one check that a path is a ``save_pretrained`` directory,
and the one loader of a causal LM from it.

Policies and critics load only from local directories (nothing is downloaded at run time);
both go through here, so a bad path fails the same way everywhere. What the apps check
before loading a model reads its files here too: ``load_tokenizer`` (the tokenizer alone)
and ``max_positions`` (the context length its config.json states). ``checkpoint_problems``
says what is missing or corrupt in one without loading it (``--check`` of a run).
"""

from __future__ import annotations

import functools
import json
import os
import struct
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def model_directory(backend: str, model_dir) -> Path:
    """The path of a local ``save_pretrained`` directory; FileNotFoundError naming it if not."""
    path = Path(os.fspath(model_dir)).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{backend}: model directory {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{backend}: {str(path / 'config.json')!r} not found "
                                "(expected a directory written by save_pretrained)")
    return path


def has_chat_template(model_dir) -> bool:
    """Whether the tokenizer saved in ``model_dir`` carries a chat template, read from its
    files without loading it (``chat_template.jinja`` / ``.json``, or the key in
    ``tokenizer_config.json``)."""
    path = Path(os.fspath(model_dir)).expanduser()
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


@functools.lru_cache(maxsize=8)
def load_tokenizer(model_dir):
    """The tokenizer saved in a local model directory, without its model (cached)."""
    path = model_directory("load_tokenizer", model_dir)
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def max_positions(model_dir) -> int | None:
    """The context length of the model saved in ``model_dir``: ``max_position_embeddings``
    of its config.json (of its text config, for a model that nests one); None when it
    states none."""
    path = model_directory("max_positions", model_dir)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def as_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    return resolved


def load_model(model_dir, device="cpu", dtype=None):
    """(model, tokenizer) from a local directory written by ``save_pretrained``.

    Never touches the network. Raises FileNotFoundError naming the path when the
    directory or its config.json is missing.
    """
    path = model_directory("load_model", model_dir)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                 dtype=as_dtype(dtype) or torch.float32)
    return model.to(device), tokenizer


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def safetensors_problem(path) -> str | None:
    """What is wrong with a ``.safetensors`` file, read without loading it (None: its header
    parses and the file holds every byte of tensor data the header promises)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path}: truncated ({size} bytes, no safetensors header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return (f"{path}: corrupt or truncated (header of {n} bytes in a file of "
                        f"{size} bytes)")
            header = json.loads(fh.read(n))
    except OSError as exc:
        return f"{path}: unreadable ({type(exc).__name__}: {exc})"
    except (ValueError, UnicodeDecodeError):
        return f"{path}: corrupt safetensors header (not JSON)"
    if not isinstance(header, dict):
        return f"{path}: corrupt safetensors header (not a JSON object)"
    ends = [t.get("data_offsets", [0, 0])[1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict)]
    if max(ends, default=0) != size - 8 - n:
        return (f"{path}: truncated or corrupt (the header promises {max(ends, default=0)} "
                f"bytes of tensor data, the file holds {size - 8 - n})")
    return None


def checkpoint_problems(model_dir, needs=("config.json",)) -> list[str]:
    """What is missing or corrupt in a ``save_pretrained`` directory, one line each: the
    directory, its ``needs`` files (JSON ones must parse), a weights file (``WEIGHTS``), and
    every ``*.safetensors`` in it (``safetensors_problem``). Empty: it looks loadable."""
    path = Path(os.fspath(model_dir))
    if not path.is_dir():
        return [f"{path}: checkpoint directory missing"]
    problems = []
    for name in needs:
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif name.endswith(".json"):
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                problems.append(f"{file}: corrupt JSON ({type(exc).__name__})")
    if not any((path / w).is_file() for w in WEIGHTS):
        problems.append(f"{path}: no weights file ({' or '.join(WEIGHTS)})")
    for file in sorted(path.glob("*.safetensors")):
        problem = safetensors_problem(file)
        if problem:
            problems.append(problem)
    return problems
