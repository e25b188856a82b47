"""Export search trees: networkx graphs, GraphML files, and lossless JSONL.

No torch, policies or critics here: only the ``Forest`` arrays and its ``TokenStore``.

JSONL format, one JSON object per tree (a line)::

    {"tree": b,                      # index of the tree in the forest it came from
     "n_nodes": n,
     "collisions": c,                # the tree's collision counter
     "qbounds": [qmin, qmax],
     "ints":   {"parent": [n ints], "first_child": [...], ...},   # every INT_FIELDS entry
     "floats": {"prior": [n floats], ...},                         # every FLOAT_FIELDS entry
     "extras": {name: [n floats], ...},                            # forest.extra_names order
     "spans":  [[span_id, [tokens...]], ...]}                      # referenced ids, ascending

Floats are written with Python's shortest round-tripping repr; non-finite floats (the empty
``qbounds`` are ``+inf, -inf``) are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``,
so every line is strict JSON. ``read_jsonl`` puts line i at tree i and rebuilds one token
store in which every referenced span keeps its id (ids no line references hold empty spans),
so writing all trees, reading, and writing again gives byte-identical files. Files written
before the node field ``value`` was renamed ``score`` (``"floats": {..., "value": [...]}``)
still read: a ``floats`` object without ``"score"`` has its ``"value"`` list taken instead.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from typing import Callable, Iterable

import networkx as nx
import numpy as np

from treesearch.engine.forest import FLOAT_FIELDS, INT_FIELDS, Forest
from treesearch.utils.atomic import atomic_write

_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
_RECORD_KEYS = ("tree", "n_nodes", "collisions", "qbounds", "ints", "floats", "extras", "spans")
# float fields under an older name, read when the current one is absent (files written before
# the rename)
_LEGACY_FLOAT_KEYS = {"score": "value"}


# -- networkx / GraphML ------------------------------------------------------------------
def _span(forest: Forest, payload: int) -> list[int]:
    """Tokens of a payload id, [] for -1 or an id the store does not hold."""
    if 0 <= payload < len(forest.tokens):
        return forest.tokens.get(payload).tolist()
    return []


def to_networkx(forest: Forest, tree: int, *, gamma: float = 1.0,
                decode: Callable[[list[int]], str] | None = None) -> nx.DiGraph:
    """One tree as a ``networkx.DiGraph``: nodes 0..n_nodes[tree]-1 (less rows detached by
    ``Forest.widen``), edges parent -> child.

    Node attributes (Python scalars): ``tokens`` (list[int], the payload's span or []),
    ``text`` (``decode(tokens)``, or None without ``decode``), ``visits``, ``q`` (float,
    ``reward + gamma * value_sum / visits``, NaN when unvisited), ``prior``, ``reward``,
    ``score``, ``value_sum``, ``terminal`` (bool), ``depth``, ``payload``, and each extra
    field by its name. Graph attributes: ``tree``, ``gamma``.
    """
    if not 0 <= tree < forest.n_trees:
        raise IndexError(f"tree {tree} not in forest of {forest.n_trees} trees")
    base = ("tokens", "text", "visits", "q", "prior", "reward", "score", "value_sum",
            "terminal", "depth", "payload")
    clash = set(base) & set(forest.extra_names)
    if clash:
        raise ValueError(f"extra fields {sorted(clash)} clash with node attribute names")
    n = int(forest.n_nodes[tree])
    q = forest.q(gamma)[tree, :n]
    graph = nx.DiGraph(tree=int(tree), gamma=float(gamma))
    # skip rows detached by widen
    live = [node for node in range(n) if forest.depth[tree, node] >= 0]
    for node in live:
        tokens = _span(forest, int(forest.payload[tree, node]))
        attrs = {
            "tokens": tokens,
            "text": decode(tokens) if decode is not None else None,
            "visits": int(forest.visits[tree, node]),
            "q": float(q[node]),
            "prior": float(forest.prior[tree, node]),
            "reward": float(forest.reward[tree, node]),
            "score": float(forest.score[tree, node]),
            "value_sum": float(forest.value_sum[tree, node]),
            "terminal": bool(forest.terminal[tree, node]),
            "depth": int(forest.depth[tree, node]),
            "payload": int(forest.payload[tree, node]),
        }
        for name, field in zip(forest.extra_names, forest.extras):
            attrs[name] = float(field[tree, node])
        graph.add_node(node, **attrs)
    for node in live[1:]:
        graph.add_edge(int(forest.parent[tree, node]), node)
    return graph


def write_graphml(forest: Forest, path, tree: int, *, gamma: float = 1.0,
                  decode: Callable[[list[int]], str] | None = None) -> None:
    """Write one tree as GraphML, atomically.

    Same attributes as ``to_networkx``, made scalar: ``tokens`` becomes a space-separated
    string, None values (``text`` without ``decode``) are dropped, NaN ``q`` stays a float.
    """
    graph = to_networkx(forest, tree, gamma=gamma, decode=decode)
    for _, attrs in graph.nodes(data=True):
        attrs["tokens"] = " ".join(map(str, attrs["tokens"]))
        for key in [k for k, v in attrs.items() if v is None]:
            del attrs[key]
    atomic_write(path, lambda fh: nx.write_graphml(graph, fh), binary=True)


# -- JSONL ---------------------------------------------------------------------------
def _encode_floats(values: np.ndarray) -> list:
    """float64 [n] -> list of floats, non-finite ones as "inf" / "-inf" / "nan"."""
    out = values.tolist()
    for i in np.nonzero(~np.isfinite(values))[0]:
        out[i] = "nan" if math.isnan(out[i]) else ("inf" if out[i] > 0 else "-inf")
    return out


def tree_records(forest: Forest, trees: Iterable[int] | None = None) -> list[dict]:
    """JSON-ready dicts, one per tree (all trees by default); see the module docstring.

    ``json.dumps(record)`` of each is exactly the line ``write_jsonl`` writes.
    """
    trees = range(forest.n_trees) if trees is None else [int(b) for b in trees]
    records = []
    for b in trees:
        if not 0 <= b < forest.n_trees:
            raise IndexError(f"tree {b} not in forest of {forest.n_trees} trees")
        n = int(forest.n_nodes[b])
        payloads = np.unique(forest.payload[b, :n])
        valid = payloads[(payloads >= 0) & (payloads < len(forest.tokens))]
        records.append({
            "tree": b,
            "n_nodes": n,
            "collisions": int(forest.collisions[b]),
            "qbounds": _encode_floats(forest.qbounds[:, b]),
            "ints": {name: getattr(forest, name)[b, :n].tolist() for name in INT_FIELDS},
            "floats": {name: _encode_floats(getattr(forest, name)[b, :n])
                       for name in FLOAT_FIELDS},
            "extras": {name: _encode_floats(field[b, :n])
                       for name, field in zip(forest.extra_names, forest.extras)},
            "spans": [[int(s), forest.tokens.get(int(s)).tolist()] for s in valid],
        })
    return records


def merge_records(parts: Iterable[list[dict]]) -> list[dict]:
    """The records of several forests (``tree_records`` of each, e.g. shards of one search
    run on different workers) as the records of one forest holding their trees in order:
    trees renumbered, and each part's span ids (and the payloads naming them) shifted past
    the previous parts' largest id. Deterministic in the parts, wherever they were made."""
    out, tree, offset = [], 0, 0
    for records in parts:
        top = -1
        for rec in records:
            spans = [[int(sid) + offset, tokens] for sid, tokens in rec["spans"]]
            payload = [p + offset if p >= 0 else p for p in rec["ints"]["payload"]]
            out.append({**rec, "tree": tree, "ints": {**rec["ints"], "payload": payload},
                        "spans": spans})
            top = max([top] + [int(sid) for sid, _ in rec["spans"]])
            tree += 1
        offset += top + 1
    return out


def write_jsonl(forest: Forest, path, trees: Iterable[int] | None = None) -> None:
    """Write one JSON line per tree (all trees by default), atomically; gzip-compressed
    when ``path`` ends in ``.gz``."""
    write_records(tree_records(forest, trees), path)


def write_records(records: list[dict], path) -> None:
    """``write_jsonl`` for records already made (``tree_records``, ``merge_records``)."""
    lines = [json.dumps(r, allow_nan=False) + "\n" for r in records]
    if os.fspath(path).endswith(".gz"):
        data = gzip.compress("".join(lines).encode("utf-8"), mtime=0)
        atomic_write(path, lambda fh: fh.write(data), binary=True)
    else:
        atomic_write(path, lambda fh: fh.writelines(lines), binary=False)


def read_jsonl(path) -> Forest:
    """Rebuild a Forest from ``write_jsonl`` output: line i becomes tree i.

    capacity = the largest n_nodes; every node field, n_nodes, qbounds, collisions, extra
    fields and token spans are restored. Raises ValueError naming the file and line (1-based)
    of any malformed line.
    """
    try:
        if os.fspath(path).endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: unreadable tree file ({exc})") from exc
    if not lines:
        raise ValueError(f"{path}: no trees (empty file)")
    parsed = []
    for lineno, line in enumerate(lines, 1):
        try:
            parsed.append(_parse_record(json.loads(line), parsed[0] if parsed else None))
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"{path}: line {lineno}: {exc}") from exc

    spans: dict[int, list[int]] = {}
    for lineno, rec in enumerate(parsed, 1):
        for sid, tokens in rec["spans"]:
            if spans.setdefault(sid, tokens) != tokens:
                raise ValueError(f"{path}: line {lineno}: span {sid} differs from an earlier line")

    forest = Forest(len(parsed), max(rec["n_nodes"] for rec in parsed),
                    extra_fields=tuple(parsed[0]["extras"]))
    if spans:
        forest.tokens.add_many([spans.get(i, []) for i in range(max(spans) + 1)])
    for b, rec in enumerate(parsed):
        n = rec["n_nodes"]
        forest.n_nodes[b] = n
        forest.collisions[b] = rec["collisions"]
        forest.qbounds[:, b] = rec["qbounds"]
        for name in INT_FIELDS:
            getattr(forest, name)[b, :n] = rec["ints"][name]
        for name in FLOAT_FIELDS:
            getattr(forest, name)[b, :n] = rec["floats"][name]
        for name, values in rec["extras"].items():
            forest.extra(name)[b, :n] = values
    return forest


def _parse_record(rec, first: dict | None) -> dict:
    """Validate one decoded line; returns it with node fields as numpy arrays."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in _RECORD_KEYS if k not in rec]
    if missing:
        raise ValueError(f"missing keys {missing}")
    _int(rec["tree"], "tree")
    n = _int(rec["n_nodes"], "n_nodes")
    if n < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n}")
    qbounds = _floats(rec["qbounds"], "qbounds", 2)
    ints = {name: _ints(_get(rec["ints"], name, "ints"), name, n) for name in INT_FIELDS}
    floats = {name: _floats(_get_float_field(rec["floats"], name), name, n)
              for name in FLOAT_FIELDS}
    if not isinstance(rec["extras"], dict):
        raise ValueError("extras must be an object")
    extras = {name: _floats(v, name, n) for name, v in rec["extras"].items()}
    if first is not None and list(extras) != list(first["extras"]):
        raise ValueError(f"extra fields {list(extras)} differ from line 1's "
                         f"{list(first['extras'])}")
    if not isinstance(rec["spans"], list):
        raise ValueError("spans must be a list of [span_id, tokens] pairs")
    spans = []
    for item in rec["spans"]:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError(f"bad span entry {item!r}, expected [span_id, tokens]")
        sid = _int(item[0], "span id")
        if sid < 0:
            raise ValueError(f"negative span id {sid}")
        tokens = _ints(item[1], f"span {sid}", None)
        np.asarray(tokens, np.int32)  # OverflowError outside int32
        spans.append((sid, tokens.tolist()))
    return {"n_nodes": n, "collisions": _int(rec["collisions"], "collisions"),
            "qbounds": qbounds, "ints": ints, "floats": floats, "extras": extras,
            "spans": spans}


def _get(obj, key: str, where: str):
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    if key not in obj:
        raise ValueError(f"missing {where} field {key!r}")
    return obj[key]


def _get_float_field(floats, name: str):
    """``floats[name]``, or its pre-rename key's list when only that one is there."""
    legacy = _LEGACY_FLOAT_KEYS.get(name)
    if isinstance(floats, dict) and name not in floats and legacy in floats:
        return floats[legacy]
    return _get(floats, name, "floats")


def _int(x, what: str) -> int:
    if type(x) is not int:
        raise ValueError(f"{what} must be an integer, got {x!r}")
    return x


def _ints(values, what: str, n: int | None) -> np.ndarray:
    """JSON list of ints -> int64 [n]."""
    if not isinstance(values, list) or (n is not None and len(values) != n):
        raise ValueError(f"{what} must be a list of {n if n is not None else 'some'} integers")
    return np.array([_int(x, what) for x in values], np.int64)


def _floats(values, what: str, n: int) -> np.ndarray:
    """JSON list of numbers or "inf" / "-inf" / "nan" -> float64 [n]."""
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{what} must be a list of {n} floats")
    out = np.empty(n, np.float64)
    for i, x in enumerate(values):
        if isinstance(x, str) and x in _NON_FINITE:
            out[i] = _NON_FINITE[x]
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out[i] = x
        else:
            raise ValueError(f"{what}[{i}] is not a float: {x!r}")
    return out
