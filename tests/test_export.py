"""Export tests on forests grown by the real kernels: networkx, GraphML, JSONL round trips."""

import json
import os

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treesearch.engine.export import (
    read_jsonl,
    to_networkx,
    tree_records,
    write_graphml,
    write_jsonl,
)
from treesearch.engine.forest import FLOAT_FIELDS, INT_FIELDS, Forest, MCTSParams


def grow_forest(seed: int, n_trees: int = 3, rounds: int = 12, k: int = 3,
                gamma: float = 1.0) -> Forest:
    """Search with random priors/scores; ~10% terminal children; payloads for most children.

    Extra field "critic" holds random floats (with a NaN and an inf in tree 0's root).
    """
    rng = np.random.default_rng(seed)
    forest = Forest(n_trees, 4, root_scores=rng.random(n_trees), extra_fields=("critic",))
    forest.payload[:, 0] = forest.tokens.add_many(random_spans(rng, n_trees))
    params = MCTSParams(leaves_per_tree=2, gamma=gamma)
    for _ in range(rounds):
        leaf_tree, leaf_node, _ = forest.select(params)
        counts = np.where(forest.terminal[leaf_tree, leaf_node] != 0, 0,
                          rng.integers(1, k + 1, len(leaf_tree)))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        c = int(offsets[-1])
        prior = rng.random(c) + 0.01
        payload = np.array(forest.tokens.add_many(random_spans(rng, c)), np.int64)
        payload[rng.random(c) < 0.2] = -1
        forest.expand_and_backup(leaf_tree, leaf_node, offsets, prior / prior.sum(),
                                 rng.normal(size=c) * 0.1, rng.random(c), rng.random(c) < 0.1,
                                 payload, gamma)
    assert not forest.check_invariants()
    forest.extra("critic")[:] = rng.normal(size=forest.extra("critic").shape)
    forest.extra("critic")[0, 0] = np.nan
    if forest.n_nodes[0] > 1:
        forest.extra("critic")[0, 1] = -np.inf
    return forest


def random_spans(rng, count):
    return [rng.integers(0, 50_000, rng.integers(0, 6)).tolist() for _ in range(count)]


def assert_same_forest(a: Forest, b: Forest):
    np.testing.assert_array_equal(a.n_nodes, b.n_nodes)
    np.testing.assert_array_equal(a.qbounds, b.qbounds)
    np.testing.assert_array_equal(a.collisions, b.collisions)
    assert a.extra_names == b.extra_names
    for t in range(a.n_trees):
        n = int(a.n_nodes[t])
        for name in INT_FIELDS:
            np.testing.assert_array_equal(getattr(a, name)[t, :n], getattr(b, name)[t, :n])
        for name in FLOAT_FIELDS:
            np.testing.assert_array_equal(getattr(a, name)[t, :n], getattr(b, name)[t, :n])
        np.testing.assert_array_equal(a.extras[:, t, :n], b.extras[:, t, :n])
        for p in a.payload[t, :n]:
            if p >= 0:
                np.testing.assert_array_equal(a.tokens.get(p), b.tokens.get(p))


def test_networkx_graph_matches_forest():
    gamma = 0.9
    forest = grow_forest(1, gamma=gamma)
    q = forest.q(gamma)
    for t in range(forest.n_trees):
        g = to_networkx(forest, t, gamma=gamma, decode=lambda toks: ",".join(map(str, toks)))
        n = int(forest.n_nodes[t])
        assert g.graph == {"tree": t, "gamma": gamma}
        assert sorted(g.nodes) == list(range(n))
        assert set(g.edges) == {(int(forest.parent[t, i]), i) for i in range(1, n)}
        assert n == 1 or nx.is_arborescence(g)
        for i, attrs in g.nodes(data=True):
            assert attrs["visits"] == forest.visits[t, i]
            np.testing.assert_equal(attrs["q"], q[t, i])
            assert attrs["terminal"] is bool(forest.terminal[t, i])
            assert attrs["depth"] == forest.depth[t, i]
            assert attrs["payload"] == forest.payload[t, i]
            for name in ("prior", "reward", "score", "value_sum"):
                assert attrs[name] == getattr(forest, name)[t, i]
            np.testing.assert_equal(attrs["critic"], forest.extra("critic")[t, i])
            p = forest.payload[t, i]
            expect = forest.tokens.get(p).tolist() if p >= 0 else []
            assert attrs["tokens"] == expect
            assert attrs["text"] == ",".join(map(str, expect))
    assert to_networkx(forest, 0).nodes[0]["text"] is None


def test_graphml_reads_back(tmp_path):
    forest = grow_forest(2)
    path = tmp_path / "tree.graphml"
    write_graphml(forest, path, 1)
    g = nx.read_graphml(path, node_type=int)
    n = int(forest.n_nodes[1])
    assert g.number_of_nodes() == n and g.number_of_edges() == n - 1
    assert [g.nodes[i]["visits"] for i in range(n)] == forest.visits[1, :n].tolist()
    p = forest.payload[1, 0]
    assert g.nodes[0]["tokens"] == " ".join(map(str, forest.tokens.get(p).tolist()))
    assert "text" not in g.nodes[0]
    assert os.listdir(tmp_path) == ["tree.graphml"]  # no temporary file left behind


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_trees=st.integers(1, 4), rounds=st.integers(0, 12),
       gamma=st.sampled_from([1.0, 0.95]))
def test_jsonl_round_trip_is_lossless(tmp_path_factory, seed, n_trees, rounds, gamma):
    forest = grow_forest(seed, n_trees, rounds, gamma=gamma)
    d = tmp_path_factory.mktemp("jsonl")
    write_jsonl(forest, d / "a.jsonl")
    back = read_jsonl(d / "a.jsonl")
    assert back.n_trees == n_trees and back.capacity == forest.n_nodes.max()
    assert_same_forest(forest, back)
    write_jsonl(back, d / "b.jsonl")
    assert (d / "a.jsonl").read_bytes() == (d / "b.jsonl").read_bytes()
    lines = (d / "a.jsonl").read_text().splitlines()
    assert lines == [json.dumps(r) for r in tree_records(forest)]


def test_jsonl_keeps_infinite_qbounds_and_subsets(tmp_path):
    forest = grow_forest(3, n_trees=3, rounds=0)  # nothing backed up: qbounds are +inf, -inf
    write_jsonl(forest, tmp_path / "f.jsonl", trees=[2])
    back = read_jsonl(tmp_path / "f.jsonl")
    assert back.n_trees == 1
    np.testing.assert_array_equal(back.qbounds[:, 0], [np.inf, -np.inf])
    assert tree_records(back)[0]["tree"] == 0


@pytest.mark.parametrize("corrupt", [
    lambda line: line[:-5],                                         # truncated JSON
    lambda line: json.dumps({k: v for k, v in json.loads(line).items() if k != "qbounds"}),
    lambda line: line.replace('"visits": [', '"visits": [1.5, '),  # wrong length and type
    lambda line: "[1, 2]",
])
def test_malformed_line_names_file_and_line(tmp_path, corrupt):
    path = tmp_path / "bad.jsonl"
    write_jsonl(grow_forest(4), path)
    lines = path.read_text().splitlines()
    lines[1] = corrupt(lines[1])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2: "):
        read_jsonl(path)


def test_export_after_reroot(tmp_path):
    forest = grow_forest(5, rounds=15)
    child, _, _, _, best = forest.root_stats()
    new_root = np.where(best >= 0, child[np.arange(forest.n_trees), np.maximum(best, 0)], 0)
    forest.reroot(new_root)
    for t in range(forest.n_trees):
        g = to_networkx(forest, t)
        assert g.number_of_nodes() == forest.n_nodes[t]
        assert g.nodes[0]["depth"] == 0 and g.in_degree(0) == 0
        assert forest.n_nodes[t] == 1 or nx.is_arborescence(g)
    write_jsonl(forest, tmp_path / "r.jsonl")
    assert_same_forest(forest, read_jsonl(tmp_path / "r.jsonl"))


def test_jsonl_written_before_the_score_rename_still_reads(tmp_path):
    """Trees written when the node field ``score`` was called ``value`` load identically."""
    forest = grow_forest(6)
    write_jsonl(forest, tmp_path / "new.jsonl")
    lines = []
    for rec in tree_records(forest):
        assert "score" in rec["floats"] and "value" not in rec["floats"]
        rec["floats"] = {("value" if k == "score" else k): v for k, v in rec["floats"].items()}
        lines.append(json.dumps(rec) + "\n")
    (tmp_path / "old.jsonl").write_text("".join(lines))
    old = read_jsonl(tmp_path / "old.jsonl")
    assert_same_forest(forest, old)
    np.testing.assert_array_equal(old.score, read_jsonl(tmp_path / "new.jsonl").score)
    write_jsonl(old, tmp_path / "again.jsonl")  # written back under the new key
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "new.jsonl").read_bytes()


def test_jsonl_without_score_or_value_names_the_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    rec = tree_records(grow_forest(7, n_trees=1))[0]
    del rec["floats"]["score"]
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=r"line 1: missing floats field 'score'"):
        read_jsonl(path)


def test_graphml_node_attribute_is_score(tmp_path):
    forest = grow_forest(8)
    g = to_networkx(forest, 0)
    assert all("score" in a and "value" not in a for _, a in g.nodes(data=True))
    with pytest.raises(ValueError, match="clash"):
        to_networkx(Forest(1, extra_fields=("score",)), 0)
    write_graphml(forest, tmp_path / "t.graphml", 0)
    back = nx.read_graphml(tmp_path / "t.graphml", node_type=int)
    n = int(forest.n_nodes[0])
    assert [back.nodes[i]["score"] for i in range(n)] == forest.score[0, :n].tolist()
