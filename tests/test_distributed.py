"""Self-play's eval stage on Ray worker actors (``treesearch.distributed``): config
refusals, the same metrics as the local backend, a local cluster that listens on loopback
only, named errors (unreachable address, unplaceable workers, a failing item) in bounded
time. Ray runs only on a local 127.0.0.1 cluster here, 2 CPUs."""

import gzip
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optional import require_module

from treesearch.config import ConfigError, load_config
from treesearch.distributed import DistributedConfig, DistributedError, shards

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["rounds=1", "train_problems=8", "eval.problems=8", "eval.samples=2",
         "eval.mcts_problems=4", "eval.mcts_budget=96", "search.simulations=6",
         "critics.epochs=1", "progress=false", "policy.threads=1"]
HINT = "pip install -c .ci/cpu-constraints.txt -e '.[ray]'"


def _selfplay(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "treesearch.selfplay", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - start


def _rows(run: Path, stage: str):
    """A stage's metrics rows without wall-clock figures (seconds, overhead share, the
    policy's tokens/s)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "overhead_share", "policy")}
            for r in rows if r["stage"] == stage]


@pytest.mark.parametrize("override, key", [
    ("distributed.backend=spark", "distributed.backend"),
    ("distributed.workers=0", "distributed.workers"),
    ("distributed.num_cpus=0", "distributed.num_cpus"),
    ("distributed.num_gpus=-1", "distributed.num_gpus"),
    ("distributed.address=http://x", "distributed.address"),
    ("distributed.shard_problems=-2", "distributed.shard_problems"),
])
def test_bad_distributed_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


def test_ray_needs_shards_and_local_is_the_default():
    assert load_config(None, []).distributed.backend == "local"
    with pytest.raises(ConfigError, match=r"distributed\.shard_problems"):
        load_config(None, ["distributed.backend=ray"])
    cfg = load_config(None, ["distributed.backend=ray", "distributed.shard_problems=4",
                             "distributed.address=ray://10.0.0.5:10001"])
    assert cfg.distributed.workers == 2  # only parsed: nothing is contacted here


def test_shards_cover_in_order():
    assert shards(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert shards(5, 0) == [(0, 5)]
    assert shards(0, 3) == []


@pytest.mark.slow
def test_ray_writes_the_local_metrics_and_trees(tmp_path):
    """Same seed, same shards: 2 Ray workers write the local backend's search trees (byte
    for byte) and search and eval metrics."""
    require_module("ray", HINT)
    local, ray_run = tmp_path / "local", tmp_path / "ray"
    proc, _ = _selfplay(*SMALL, "distributed.shard_problems=3", f"out={local}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, _ = _selfplay(*SMALL, "distributed.shard_problems=3", "distributed.backend=ray",
                        "distributed.workers=2", f"out={ray_run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(ray_run, "eval")
    assert len(rows) == 2 and rows == _rows(local, "eval")  # rounds 0 and 1
    assert _rows(ray_run, "search") == _rows(local, "search")
    trees = ray_run / "round_1" / "trees.jsonl.gz"
    assert trees.read_bytes() == (local / "round_1" / "trees.jsonl.gz").read_bytes()
    assert len(gzip.decompress(trees.read_bytes()).splitlines()) == 8  # 3 + 3 + 2 merged
    assert "backend: ray" in (ray_run / "config.yaml").read_text()


def test_unreachable_address_is_named_in_bounded_time(tmp_path):
    """Nothing listens on loopback port 1: refused at once, exit 2, no run directory."""
    require_module("ray", HINT)
    run = tmp_path / "run"
    proc, seconds = _selfplay(*SMALL, "distributed.backend=ray", "distributed.shard_problems=2",
                              "distributed.address=127.0.0.1:1", f"out={run}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "distributed.address '127.0.0.1:1'" in proc.stderr
    assert "no Ray cluster reachable" in proc.stderr
    assert seconds < 60
    assert not run.exists()


# -- one in-process local cluster for the rest -------------------------------------------
@pytest.fixture(scope="module")
def pool():
    require_module("ray", HINT)
    psutil = require_module("psutil", HINT)
    from treesearch.distributed import cluster

    cfg = DistributedConfig(backend="ray", workers=2, num_cpus=1, shard_problems=1)
    with cluster(cfg) as p:
        yield p
    deadline = time.monotonic() + 30  # nothing of the cluster outlives it
    while time.monotonic() < deadline:
        left = [c for c in psutil.Process().children(recursive=True) if c.is_running()
                and c.status() != psutil.STATUS_ZOMBIE]
        if not left:
            break
        time.sleep(0.5)
    assert not left, [c.name() for c in left]


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:127.0.0.1
    return addr.is_loopback


def test_local_cluster_listens_on_loopback_only(pool):
    import psutil

    listening, names = [], set()
    for proc in psutil.Process().children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                listening.append((name, c.laddr.ip, c.laddr.port))
                names.add(name)
    assert {"gcs_server", "raylet"} <= names, listening  # the check saw the cluster
    exposed = [x for x in listening if not _loopback(x[1])]
    assert not exposed, f"Ray processes listening beyond loopback: {exposed}"


def test_map_keeps_item_order_and_names_a_failing_item(pool):
    pool.setup(list, [10, 20, 30])  # every worker's state: a list (importable factory)
    assert pool.map("__getitem__", [2, 0, 1, 2]) == [30, 10, 20, 30]
    with pytest.raises(DistributedError, match=r"7.*IndexError"):
        pool.map("__getitem__", [0, 7])


def test_workers_the_cluster_cannot_place_fail_in_bounded_time(pool):
    from treesearch.distributed import WorkerPool

    start = time.monotonic()
    with pytest.raises(DistributedError, match="could not place 1 workers of num_cpus=8"):
        WorkerPool(DistributedConfig(backend="ray", workers=1, num_cpus=8), place_timeout=3)
    assert time.monotonic() - start < 30
