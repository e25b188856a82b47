"""Recipes: omegaconf structured configs over dataclasses, YAML files and dotlist overrides.

One loader for every app (self-play, decode, the study): defaults of a dataclass schema
<- a YAML file <- ``key=value`` overrides. An unknown key or an ill-typed value is a
``ConfigError`` naming the key and where it came from.

A recipe section that embeds a library config (``policies.distill.DistillConfig``,
``policies.rl.RLConfig``, ...) holds its knobs as they are; the app builds the config with
``library_config`` and checks it with the library's own ``validate`` (``check_library``).
The fields the app fills itself (a seed per stage, the run's progress bar) stay ``???``
(omegaconf's MISSING) in the recipe, and ``check_set_by_app`` refuses a value there.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Sequence

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    GrammarParseError,
    OmegaConfBaseException,
    ValidationError,
)
from omegaconf.nodes import BooleanNode

from treesearch.utils.knobs import KnobError


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def valid_keys(node=None, prefix: str = "", schema=None) -> list[str]:
    """Every dotted key of ``schema``; free-form dicts (e.g. a
    prior's ``pretrain`` fields) count as one key."""
    node = OmegaConf.structured(schema) if node is None else node
    out = []
    for key in node:
        if OmegaConf.is_missing(node, key):  # a field the app sets itself (``???``)
            out.append(f"{prefix}{key}")
            continue
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


def library_config(cls, section, **values):
    """An object of the library config ``cls`` from the recipe ``section`` that embeds it
    (a DictConfig or a dataclass object): every field of ``cls`` read from the section,
    except those given in ``values`` (what the app sets or adjusts itself)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            value = getattr(section, f.name)
            out[f.name] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return cls(**out, **values)


def check_library(validate: Callable, config, key: str):
    """``validate(config)``, the library's own checks of a config built by ``library_config``;
    its ``KnobError`` becomes a ``ConfigError`` naming the recipe key ``key.<field>``."""
    try:
        return validate(config)
    except KnobError as exc:
        raise ConfigError(f"config key '{key}.{exc.field}': {exc}") from None


def set_by_app(fields: Mapping[str, str]) -> dict:
    """{field: MISSING} for the fields an app sets itself, for a section's default
    (``fields``: field -> what sets it, for ``check_set_by_app``'s message)."""
    return dict.fromkeys(fields, MISSING)


def check_set_by_app(section, key: str, fields: Mapping[str, str]) -> None:
    """Refuse a value in a field of the recipe ``section`` (named ``key``) that the app sets
    itself: ``fields`` maps each such field to what sets it."""
    for name, source in fields.items():
        if not OmegaConf.is_missing(section, name):
            raise ConfigError(f"config key '{key}.{name}' = {getattr(section, name)!r}: set by "
                              f"the app from {source}; leave it out of the recipe")


def rename_keys(data, renames: Mapping[str, Sequence[str]], where: str = ""):
    """``data`` (a DictConfig of plain YAML) with each key spelled as in ``renames`` (old
    dotted key -> the new dotted keys it sets) moved to its new keys, so an older recipe's
    spelling keeps loading. A key spelled both ways is a ``ConfigError``."""
    for old, new in renames.items():
        value = OmegaConf.select(data, old, default=_MISSING)
        if value is _MISSING:
            continue
        for key in new:
            if OmegaConf.select(data, key, default=_MISSING) is not _MISSING:
                raise ConfigError(f"config key {old!r}{where} is the older spelling of "
                                  f"{key!r}, which is also given; keep one")
        parent, _, leaf = old.rpartition(".")
        (OmegaConf.select(data, parent) if parent else data).pop(leaf)
        for key in new:
            OmegaConf.update(data, key, value, merge=True)
    return data


def _renamed_overrides(overrides, renames: Mapping[str, Sequence[str]]) -> list[str]:
    """The dotlist ``overrides`` with an older spelling's key replaced by its new keys."""
    out = []
    for item in overrides:
        key, eq, value = item.partition("=")
        out += [f"{new}={value}" for new in renames[key]] if eq and key in renames else [item]
    return out


EXTENDS = "extends"  # a recipe's key naming the recipe it changes


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=32)
def _parsed(path: str, mtime_ns: int, size: int):
    """A YAML file as omegaconf reads it, parsed once per version of the file."""
    return OmegaConf.load(path)


def _read_yaml(path: Path, renames: Mapping | None):
    """One recipe file's YAML as a DictConfig (older spellings renamed); ConfigError when
    it is not a mapping of keys (a list, a number, an unreadable file)."""
    try:
        data = copy.deepcopy(_parsed(str(path), *_stamp(path)))
    except OSError as exc:  # omegaconf's "Invalid loaded object type" for a scalar file
        raise ConfigError(f"config file {str(path)!r} is not a mapping of config keys "
                          f"({exc})") from None
    if not OmegaConf.is_dict(data):
        raise ConfigError(f"config file {str(path)!r} is not a mapping of config keys (it "
                          f"holds a {type(OmegaConf.to_container(data)).__name__})")
    return rename_keys(data, renames or {}, f" in {str(path)!r}")


def _load_extended(path: Path, seen: tuple = (), renames: Mapping | None = None):
    """A recipe file's YAML with its ``extends`` chain resolved: the named recipe (a
    shipped name, or a path relative to this file's folder) loaded first, this file's keys
    merged on top (a list replaces the list it names, a mapping merges into its own).
    Each file's older spellings are renamed (``rename_keys``) before the merge."""
    data = _read_yaml(path, renames)
    if EXTENDS not in data:
        return data
    name = str(data.pop(EXTENDS))
    beside = path.parent / name
    parent = recipe_path(beside if beside.is_file() else name)
    if parent.resolve() in seen or parent.resolve() == path.resolve():
        raise ConfigError(f"recipe {str(path)!r}: 'extends' goes round in a circle through "
                          f"{str(parent)!r}")
    return OmegaConf.merge(_load_extended(parent, seen + (path.resolve(),), renames), data)


YAML_BOOLS = ("true", "false", "yes", "no", "on", "off")


def check_bools(cfg, data, where: str = "", prefix: str = "") -> None:
    """Refuse a number or a word other than true/false given to a boolean key of ``cfg``
    (omegaconf would read ``progress=2`` as True): ``data`` is the plain YAML (a DictConfig
    or dict) about to be merged into ``cfg``."""
    if not OmegaConf.is_dict(cfg) or not isinstance(data, (dict, DictConfig)):
        return
    for key in data:
        if not isinstance(key, str) or key not in cfg or OmegaConf.is_missing(cfg, key):
            continue
        node = cfg._get_node(key)
        value = data._get_node(key)._value() if isinstance(data, DictConfig) else data[key]
        if isinstance(node, BooleanNode) and value is not None and not (
                isinstance(value, bool) or str(value).lower() in YAML_BOOLS):
            raise ConfigError(f"bad value for config key '{prefix}{key}'{where}: {value!r} is "
                              "not true or false")
        if OmegaConf.is_dict(node) and OmegaConf.get_type(node) is not dict:
            check_bools(node, value, where, f"{prefix}{key}.")


def check_resolved(cfg, where: str = "") -> None:
    """Refuse a ``${...}`` interpolation of ``cfg`` that does not resolve and a float that
    is not finite (nan, inf), naming the key: no knob takes one."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(f"bad value for config key {key!r}{where}: cannot resolve it "
                          f"({msg})") from None
    _check_finite(plain, "")


def _check_finite(value, key: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key {key!r} = {value!r}: must be a finite number")
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for k, v in items:
        _check_finite(v, f"{key}.{k}" if key else str(k))


def _override(cfg, item: str, where: str):
    """``cfg`` with one ``key=value`` override merged in (a digit part of the key indexes
    a list, updated in place)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, value = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: {key!r} is not a dotted config key")
    parsed = OmegaConf.from_dotlist([f"x={value}"])._get_node("x")._value()  # unresolved
    parent, _, leaf = key.rpartition(".")
    section = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    check_bools(section, {leaf: parsed}, where, f"{parent}." if parent else "")
    if any(part.isdigit() for part in key.split(".")):
        # dotlist merging cannot index a list: update the item in place
        if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise ConfigKeyError(f"unknown key {key}")
        OmegaConf.update(cfg, key, parsed, merge=False)
        return cfg
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))


@functools.lru_cache(maxsize=16)
def _structured(schema: type):
    return OmegaConf.structured(schema)


def schema_node(schema):
    """A fresh structured config of ``schema`` (a dataclass or an instance); a class's is
    built once and copied (building one costs far more than copying it)."""
    return copy.deepcopy(_structured(schema)) if isinstance(schema, type) else \
        OmegaConf.structured(schema)


def load_recipe(schema, path: str | Path | None = None, overrides=(),
                renames: Mapping[str, Sequence[str]] | None = None):
    """Defaults of the dataclass ``schema`` (a class, or an instance whose values are the
    defaults) <- YAML file (after the recipe it ``extends``, if it names one) <- dotlist
    overrides, as an omegaconf DictConfig. An override may index a list
    (``priors.1.pretrain={tokens: 9}``).
    ``renames``: older spellings of keys (old dotted key -> its new keys), accepted in
    files and overrides. Unknown keys, ill-typed values (a number for a boolean too),
    interpolations that do not resolve and floats that are not finite raise
    ``ConfigError`` naming the key and where it came from; nothing is validated beyond
    that (the caller's ``validate`` does)."""
    cfg = schema_node(schema)
    where = ""
    try:
        if path is not None:
            path = recipe_path(path)
            where = f" in {str(path)!r}"
            data = _load_extended(path, renames=renames)
            check_bools(cfg, data, where)
            cfg = OmegaConf.merge(cfg, data)
        where = " (command-line override)"
        for item in _renamed_overrides(overrides, renames or {}):
            where = f" (command-line override {item!r})"
            cfg = _override(cfg, item, where)
        where = f" in {str(path)!r} or the command line" if path is not None else ""
        check_resolved(cfg, where)
    except ConfigKeyError as exc:
        key = getattr(exc, "full_key", None) or str(exc).removeprefix("unknown key ")
        raise ConfigError(f"unknown config key {key!r}{where}; valid keys: "
                          f"{', '.join(valid_keys(schema=schema))}") from None
    except (ValidationError, TypeError) as exc:
        key = getattr(exc, "full_key", None) or where_key(where)
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        raise ConfigError(f"bad value for config key {key!r}{where}: {msg}") from None
    except (yaml.YAMLError, GrammarParseError) as exc:  # not YAML at all: name the file or item
        raise ConfigError(f"cannot read the YAML{where}: {' '.join(str(exc).split())}") from None
    return cfg


def where_key(where: str) -> str:
    """The key of the override named in ``where`` (`` (command-line override 'k=v')``)."""
    head, _, item = where.partition("override '")
    return item.split("=", 1)[0] if head and item else ""
