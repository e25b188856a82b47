"""Recipes: omegaconf structured configs over dataclasses, YAML files and dotlist overrides.

One loader for every app (self-play, decode, the study): defaults of a dataclass schema
<- a YAML file <- ``key=value`` overrides. An unknown key or an ill-typed value is a
``ConfigError`` naming the key and where it came from.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, GrammarParseError, ValidationError


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def valid_keys(node=None, prefix: str = "", schema=None) -> list[str]:
    """Every dotted key of ``schema``; free-form dicts (e.g. a
    prior's ``pretrain`` fields) count as one key."""
    node = OmegaConf.structured(schema) if node is None else node
    out = []
    for key in node:
        value = node[key]
        if OmegaConf.is_dict(value) and OmegaConf.get_type(value) is not dict:
            out.extend(valid_keys(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


_MISSING = object()


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``configs/*.yaml``, installed as
    ``treesearch/recipes``), without the ``.yaml``."""
    folder = resources.files("treesearch") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def recipe_path(name_or_path) -> Path:
    """The YAML file of a recipe: an existing file as given, else a shipped recipe by name
    (``default``, ``smollm2.yaml`` or ``configs/smollm2.yaml`` work from any directory).
    ConfigError naming the shipped recipes when neither exists."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    shipped = resources.files("treesearch") / "recipes" / f"{name}.yaml"
    if path.parent in (Path("."), Path("configs")) and shipped.is_file():
        return Path(str(shipped))
    raise ConfigError(f"config file {str(name_or_path)!r} does not exist (shipped recipes: "
                      f"{', '.join(shipped_recipes())})")


def instantiate(node, key: str):
    """The dataclass object a structured config node stands for (``OmegaConf.to_object``),
    so the dataclass runs its own checks; their ValueError ("SearchConfig.x must ...")
    becomes a ConfigError naming the config key ("config key search.x must ...")."""
    try:
        return OmegaConf.to_object(node)
    except ValueError as exc:
        name = OmegaConf.get_type(node).__name__
        raise ConfigError(f"config key {str(exc).replace(name + '.', key + '.')}") from None


EXTENDS = "extends"  # a recipe's key naming the recipe it changes


def _load_extended(path: Path, seen: tuple = ()):
    """A recipe file's YAML with its ``extends`` chain resolved: the named recipe (a
    shipped name, or a path relative to this file's folder) loaded first, this file's keys
    merged on top (a list replaces the list it names, a mapping merges into its own)."""
    data = OmegaConf.load(path)
    if EXTENDS not in data:
        return data
    name = str(data.pop(EXTENDS))
    beside = path.parent / name
    parent = recipe_path(beside if beside.is_file() else name)
    if parent.resolve() in seen or parent.resolve() == path.resolve():
        raise ConfigError(f"recipe {str(path)!r}: 'extends' goes round in a circle through "
                          f"{str(parent)!r}")
    return OmegaConf.merge(_load_extended(parent, seen + (path.resolve(),)), data)


def load_recipe(schema, path: str | Path | None = None, overrides=()):
    """Defaults of the dataclass ``schema`` (a class, or an instance whose values are the
    defaults) <- YAML file (after the recipe it ``extends``, if it names one) <- dotlist
    overrides, as an omegaconf DictConfig. An override may index a list (``priors.1.pretrain={tokens: 9}``).
    Unknown keys and ill-typed values raise ``ConfigError`` naming the key and where it
    came from; nothing is validated beyond types (the caller's ``validate`` does that)."""
    cfg = OmegaConf.structured(schema)
    where = ""
    try:
        if path is not None:
            path = recipe_path(path)
            where = f" in {str(path)!r}"
            cfg = OmegaConf.merge(cfg, _load_extended(path))
        where = " (command-line override)"
        for item in overrides:
            where = f" (command-line override {item!r})"
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key=value")
            key, value = item.split("=", 1)
            if any(part.isdigit() for part in key.split(".")):
                # dotlist merging cannot index a list: update the item in place
                if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
                    raise ConfigKeyError(f"unknown key {key}")
                OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"x={value}"]).x, merge=False)
            else:
                cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or str(exc).removeprefix("unknown key ")
        raise ConfigError(f"unknown config key {key!r}{where}; valid keys: "
                          f"{', '.join(valid_keys(schema=schema))}") from None
    except (ValidationError, TypeError) as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(f"bad value for config key {key!r}{where}: {msg}") from None
    except (yaml.YAMLError, GrammarParseError) as exc:  # not YAML at all: name the file or item
        raise ConfigError(f"cannot read the YAML{where}: {' '.join(str(exc).split())}") from None
    return cfg
