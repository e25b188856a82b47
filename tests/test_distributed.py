"""Self-play, decode and the study on Ray worker actors (``treesearch.distributed``):
config refusals; the same metrics as the local backend at any number of workers; faults
(a worker SIGKILLed mid-item is restarted and its item re-run, a worker that raises stops
the run naming the item, a driver SIGKILLed takes its cluster along and --resume finishes
the run); a local cluster that listens on loopback only; named errors in bounded time
(unreachable address, a port where something else listens, unplaceable workers). Ray runs
only on local 127.0.0.1 clusters here, 2 CPUs."""

import gzip
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


def test_a_worker_runs_at_the_cpus_it_holds_not_the_drivers_threads(tmp_path, monkeypatch):
    """policy.threads (the study's threads) is the driver's: a worker of num_cpus=1 runs one
    torch thread once its self-play or study state is built, even when that state asked
    for two (else two workers put four threads on two cores); fractional CPUs round down
    to at least one."""
    import torch

    from treesearch.distributed import _Worker, worker_threads
    from treesearch.selfplay.run import _shard_worker
    from treesearch.study.config import load_study_config
    from treesearch.study.run import _study_worker

    assert worker_threads(DistributedConfig(num_cpus=0.5)) == 1
    assert worker_threads(DistributedConfig(num_cpus=3.0)) == 3
    asked = []  # what torch is asked for (the process's own count is left alone)
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    one = _Worker(threads=worker_threads(DistributedConfig(num_cpus=1)))
    one.setup(("selfplay", _shard_worker,
               (load_config("game24", ["policy.threads=2"]), str(tmp_path))))
    assert asked[-1] == 1
    one.setup(("study", _study_worker,
               (load_study_config("study_quick", ["threads=2"]), str(tmp_path / "study"))))
    assert asked[-1] == 1
    asked.clear()
    two = _Worker(threads=2)
    two.setup(("selfplay", _shard_worker,
               (load_config("game24", ["policy.threads=1"]), str(tmp_path))))
    assert asked[-1] == 2
    two.setup(("selfplay", _shard_worker, ()))  # the same state: nothing is set again
    assert len(asked) == 2


def test_shards_cover_in_order():
    assert shards(8, 3) == [(0, 3), (3, 6), (6, 8)]
    assert shards(5, 0) == [(0, 5)]
    assert shards(0, 3) == []


def _popen(*args):
    """A self-play run in the background, its output in a file (``proc.log``): a pipe
    nobody reads while the run goes on would stall it once Ray's logs fill the buffer."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "treesearch.selfplay", *args], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def _tail(proc, chars: int = 3000) -> str:
    proc.log.seek(0)
    return proc.log.read()[-chars:]


def _busy_worker(proc, timeout: float = 120):
    """A Ray worker process of ``proc``'s local cluster while it runs an item."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if child.cmdline()[:1] == ["ray::_Worker.call"]:
                    return child
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        time.sleep(0.02)
    raise AssertionError("no worker was seen running an item")


def _wait_for(path: Path, text: str, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.05)
    why = f"the run exited with {proc.returncode}" if proc.poll() is not None else \
        f"not within {timeout:.0f} s"
    raise AssertionError(f"{text!r} never appeared in {path} ({why}):\n{_tail(proc)}")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The local backend's run with shards of 3 problems: what every Ray run must write."""
    require_module("ray", HINT)
    run = tmp_path_factory.mktemp("local") / "run"
    proc, _ = _selfplay(*SMALL, "distributed.shard_problems=3", f"out={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.slow
def test_killed_worker_then_killed_driver_resume_to_the_local_metrics_and_trees(local_run,
                                                                               tmp_path):
    """Same seed, same shards, 2 Ray workers. One worker is SIGKILLed while it runs a
    search shard of round 1: Ray restarts it, the shard is re-run, and the search writes
    the local backend's trees byte for byte. Then the driver is SIGKILLed: its whole
    local cluster goes with it, and --resume starts a new one and finishes with the local
    backend's search and eval metrics."""
    import psutil

    run = tmp_path / "ray"
    proc = _popen(*SMALL, "distributed.shard_problems=3", "distributed.backend=ray",
                  "distributed.workers=2", f"out={run}")
    _wait_for(run / "state.json", "0/eval", proc, timeout=300)  # round 1's search is next
    victim = _busy_worker(proc)
    victim.send_signal(signal.SIGKILL)
    _wait_for(run / "state.json", "1/search", proc, timeout=300)
    trees = run / "round_1" / "trees.jsonl.gz"
    assert trees.read_bytes() == (local_run / "round_1" / "trees.jsonl.gz").read_bytes()
    assert len(gzip.decompress(trees.read_bytes()).splitlines()) == 8  # 3 + 3 + 2 merged
    assert _rows(run, "search") == _rows(local_run, "search")

    cluster_procs = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert "1/eval" not in json.loads((run / "state.json").read_text())["done"]
    _, alive = psutil.wait_procs(cluster_procs, timeout=30)
    assert not alive, [p.name() for p in alive]  # nothing of the cluster outlives its driver
    proc, _ = _selfplay("--resume", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(run, "eval")
    assert len(rows) == 2 and rows == _rows(local_run, "eval")  # rounds 0 and 1
    assert _rows(run, "search") == _rows(local_run, "search")
    assert "backend: ray" in (run / "config.yaml").read_text()


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


@pytest.fixture
def not_ray():
    """A loopback port where something that is not Ray listens: it accepts connections
    and answers every one with an HTTP error (yields the port)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_a_port_where_something_else_listens_is_named_in_bounded_time(not_ray, tmp_path):
    """Something answers at the address, but not Ray's GCS: refused by name within the
    connect timeout (ray.init itself would wait minutes), exit 2, no run directory."""
    require_module("ray", HINT)
    run = tmp_path / "run"
    address = f"127.0.0.1:{not_ray}"
    proc, seconds = _selfplay(*SMALL, "distributed.backend=ray", "distributed.shard_problems=2",
                              f"distributed.address={address}", f"out={run}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"distributed.address '{address}': something listens at {address} but it is " \
           "not a Ray GCS" in proc.stderr, proc.stderr[-3000:]
    assert seconds < 60
    assert not run.exists()


def test_a_listener_that_never_answers_is_named_in_bounded_time():
    """A loopback socket that accepts connections and says nothing: the probe gives up
    after the connect timeout (ray.init would wait minutes) and names the address."""
    require_module("ray", HINT)
    from treesearch.distributed import cluster

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"ray://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        match = f"'{address}': something listens .* not a Ray Client server .*within 2 s"
        with (pytest.raises(DistributedError, match=match),
              cluster(DistributedConfig(backend="ray", address=address), connect_timeout=2)):
            pass
        assert time.monotonic() - start < 10


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


def test_map_keeps_item_order_and_names_a_failing_item(pool, capsys):
    pool.setup(list, [10, 20, 30])  # every worker's state: a list (importable factory)
    assert pool.map("__getitem__", [2, 0, 1, 2]) == [30, 10, 20, 30]
    assert "cells" not in capsys.readouterr().err
    assert pool.map("__getitem__", [1, 0], names=["one", "zero"], desc="cells") == [20, 10]
    assert "cells: 100%" in capsys.readouterr().err   # the bar of the items finished
    with pytest.raises(DistributedError, match=r"7.*IndexError"):
        pool.map("__getitem__", [0, 7])


def test_workers_the_cluster_cannot_place_fail_in_bounded_time(pool):
    from treesearch.distributed import WorkerPool

    start = time.monotonic()
    with pytest.raises(DistributedError, match="could not place 1 workers of num_cpus=8"):
        WorkerPool(DistributedConfig(backend="ray", workers=1, num_cpus=8), place_timeout=3)
    assert time.monotonic() - start < 30


class _Slow:
    """A worker state whose items take a while and leave a line (item, pid) in a log as
    they start. This test module travels to the workers by value (they cannot import it)."""

    def __init__(self, log: str):
        self.log = log

    def run(self, item):
        i, seconds = item
        with open(self.log, "a") as f:
            f.write(f"{i} {os.getpid()}\n")
        time.sleep(seconds)
        return i * 10


def _starts(log: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines()] \
        if log.exists() else []


def test_a_worker_killed_mid_item_is_restarted_and_its_item_rerun(pool, tmp_path):
    """SIGKILL to the process of the worker running item 0: Ray restarts the actor, the
    restarted one rebuilds its state and runs item 0 again, and map returns every result
    in order as if nothing had happened."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    log = tmp_path / "starts.log"
    pool.setup(_Slow, str(log))
    out = {}
    thread = threading.Thread(target=lambda: out.update(r=pool.map("run",
                                                                   [(i, 1.0) for i in range(4)])))
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(i == 0 for i, _ in _starts(log)):
        time.sleep(0.05)
    victim = next(pid for i, pid in _starts(log) if i == 0)
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert out["r"] == [0, 10, 20, 30]
    runs_of_0 = [pid for i, pid in _starts(log) if i == 0]
    assert len(runs_of_0) == 2 and runs_of_0[0] == victim != runs_of_0[1], _starts(log)
    assert pool.map("run", [(5, 0.0), (6, 0.0)]) == [50, 60]  # both workers serve on


def _no_seconds(obj):
    """``obj`` without wall-clock figures (keys naming seconds)."""
    if isinstance(obj, dict):
        return {k: _no_seconds(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_no_seconds(v) for v in obj]
    return obj


def test_decode_rows_are_the_same_here_and_on_two_workers(pool):
    """decode's (strategy, budget) jobs cut into shards of 2 problems, seeded by shard:
    run here in order and on the 2 workers, the same rows (answers scored, tokens, critic
    work), whatever ran where."""
    from treesearch import decode as app

    args = app.parse_args(["--problems", "5", "--strategies", "greedy", "majority", "mcts",
                           "--budgets", "48", "--outcome", "checker",
                           "distributed.shard_problems=2", "search.simulations=4"])
    assert args.distributed == ["distributed.shard_problems=2"]
    settings, search = app.resolve_settings(args)
    spec = app.run_spec(args, settings)
    built = app.build_run(spec)
    here = app.shard_rows(built, spec, search, settings, 2, pool=None)
    there = app.shard_rows(built, spec, search, settings, 2, pool=pool)
    assert [(r["strategy"], r["budget"]) for r in here] == [
        ("greedy", None), ("majority", 48), ("mcts", 48)]
    assert _no_seconds(there) == _no_seconds(here)
    assert all(r["tokens"] > 0 for r in here)


def test_decode_names_an_address_that_is_not_ray(not_ray, capsys):
    """decode's command line with an address where something else listens: exit 2 and
    the address named, within the connect timeout, before any decoding."""
    from treesearch import decode as app

    start = time.monotonic()
    code = app.main(["--problems", "2", "--strategies", "greedy", "--budgets", "48",
                     "--out", "/nonexistent/never-written", "distributed.backend=ray",
                     "distributed.shard_problems=1", f"distributed.address=127.0.0.1:{not_ray}"])
    assert code == 2
    assert f"127.0.0.1:{not_ray}' : something" in capsys.readouterr().err.replace("':", "' :")
    assert time.monotonic() - start < 60


def test_decode_refuses_bad_distributed_values_by_key():
    from treesearch import decode as app

    args = app.parse_args(["distributed.workers=0"])
    with pytest.raises(ConfigError, match=r"distributed\.workers"):
        app.distributed_config(args)
    args = app.parse_args(["distributed.wrkers=2"])
    with pytest.raises(ConfigError, match=r"distributed\.wrkers"):
        app.distributed_config(args)


def test_study_cells_on_two_workers_measure_what_a_local_study_does(pool, tmp_path):
    """One prior, the tree optimizer and an on-policy one, tiny budgets: the cells run
    on the 2 workers (search first, then the cells) write the local study's measurements."""
    from treesearch.study.config import load_study_config
    from treesearch.study.run import Study
    from treesearch.utils.runs import RunDir

    small = ["priors=[{name: p3, model: tiny-countdown3}]", "optimizers=[mcts, grpo]",
             "seeds=[0]", "budget_tokens=1000", "train_problems=4", "eval.problems=2",
             "eval.ood_problems=0", "eval.samples=4", "eval.entropy_samples=1",
             "rl.problems_per_step=4", "rl.group_size=4", "threads=1", "progress=false"]
    measured = {}
    for name, use in (("local", None), ("ray", pool)):
        cfg = load_study_config("study_quick", small)
        run = RunDir.create(tmp_path / name, "")
        Study(cfg, run, use).run_all()
        measured[name] = {p.relative_to(run.path).as_posix(): json.loads(p.read_text())
                          for p in sorted(run.path.glob("cells/**/measure.json"))}
        assert (run.path / "report.md").is_file()
    assert list(measured["ray"]) == ["cells/p3/base/measure.json",
                                     "cells/p3/grpo/seed0/measure.json",
                                     "cells/p3/mcts/seed0/measure.json"]
    assert _no_seconds(measured["ray"]) == _no_seconds(measured["local"])


def test_a_worker_that_cannot_load_the_checkpoint_stops_the_run_naming_it(pool, tmp_path):
    """A policy whose weights are truncated: the workers fail loading it on round 0's
    first eval shards; the run stops with the worker's error naming the stage, the shard's
    problems and the checkpoint, and nothing of the stage is written."""
    from omegaconf import OmegaConf

    from policies.zoo import resolve
    from treesearch.selfplay import SelfPlay
    from treesearch.utils.runs import RunDir

    model = tmp_path / "broken-prior"
    model.mkdir()
    for f in Path(resolve("tiny-countdown3")).iterdir():
        if f.is_file():
            (model / f.name).write_bytes(f.read_bytes())
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = load_config(None, [*SMALL, "distributed.shard_problems=3", "distributed.backend=ray",
                             f"policy.model={model}"])
    run = RunDir.create(tmp_path / "run", OmegaConf.to_yaml(cfg))
    with pytest.raises(DistributedError) as err:
        SelfPlay(cfg, run, pool).run_all()
    assert re.search(r"a worker failed on 'round 0 eval/greedy problems \[\d:\d\] \(ids "
                     r"game24:[^)]+\)': RunError: ", str(err.value)), str(err.value)
    assert f"{model}: cannot load the policy checkpoint" in str(err.value)
    assert not run.metrics() and not run.is_done(0, "eval")
    assert not list(run.path.glob("round_*")) and not (run.path / "summary.md").exists()


def test_the_gpu_cluster_recipe_loads():
    """configs/ray_gpu.yaml: a vLLM engine per one-GPU worker joined by address, the
    learner's device in the driver; it loads and passes the checks (nothing contacted)."""
    cfg = load_config("ray_gpu")
    d = cfg.distributed
    assert (d.backend, d.address, d.num_gpus, d.workers) == ("ray", "auto", 1.0, 7)
    assert d.shard_problems >= 1 and d.retries >= 1
    assert cfg.policy.backend == "vllm" and cfg.policy.device == "cuda"


# -- a user's own task on the workers, niceness ------------------------------------------
USER_TASK = '''
"""A user's task: countdown3 under another factory, in a directory outside the package.
Each process that builds it leaves a file named by its pid beside this module."""
import os
from pathlib import Path

from treesearch.tasks import get_task


def make_task(**kwargs):
    (Path(__file__).parent / f"built-by-{os.getpid()}").touch()
    return get_task("countdown3", **kwargs)
'''
# the driver imports the user's module from a directory put on its sys.path in code (as a
# notebook or a wrapper script would): neither PYTHONPATH nor the working directory, which
# Ray hands its workers by itself, holds it
DRIVER = "import sys; sys.path.insert(0, sys.argv[1]); from treesearch.{} import main; " \
         "sys.exit(main(sys.argv[2:]))"


@pytest.mark.slow
def test_a_user_task_by_module_factory_runs_on_two_workers(tmp_path):
    """``task=user_task:make_task`` from a temporary directory outside the package, on a
    2-worker local cluster: the workers import the module themselves (its directory on
    their sys.path) and the run writes the local backend's metrics."""
    require_module("ray", HINT)
    user = tmp_path / "user"
    user.mkdir()
    (user / "user_task.py").write_text(USER_TASK)
    assert not str(user).startswith(str(ROOT))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    rows = {}
    for backend in ("local", "ray"):
        run = tmp_path / backend
        proc = subprocess.run([sys.executable, "-c", DRIVER.format("selfplay"), str(user), *SMALL,
                               "task=user_task:make_task", "distributed.shard_problems=3",
                               f"distributed.backend={backend}", "distributed.workers=2",
                               f"out={run}"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[backend] = {stage: _rows(run, stage) for stage in ("search", "eval")}
        if backend == "local":
            local_builders = set(user.glob("built-by-*"))
    assert rows["ray"] == rows["local"] and len(rows["ray"]["eval"]) == 2
    workers = set(user.glob("built-by-*")) - local_builders
    assert len(workers) >= 3, workers  # the ray driver and both workers built the task

    for made in user.glob("built-by-*"):
        made.unlink()
    proc = subprocess.run([sys.executable, "-c", DRIVER.format("decode"), str(user),
                           "--task", "user_task:make_task", "--problems", "4",
                           "--strategies", "greedy", "--out", str(tmp_path / "decode"),
                           "distributed.backend=ray", "distributed.workers=2",
                           "distributed.shard_problems=2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(set(user.glob("built-by-*"))) >= 3  # decode's workers imported it too


def test_workers_run_at_the_configured_niceness(pool):
    """Ray starts workers at niceness 15; each sets every thread of its process to
    ``distributed.niceness`` (0 by default) as it starts."""
    import psutil

    from treesearch.distributed import WorkerPool

    assert DistributedConfig().niceness == 0
    for p in pool.pids:
        assert psutil.Process(p).nice() == 0
    threads = pool.ray.get(pool.actors[0].niceness.remote())
    assert len(threads) > 1 and set(threads) == {0}, threads
    nice = WorkerPool(DistributedConfig(backend="ray", workers=1, num_cpus=0, niceness=7),
                      place_timeout=30)  # no CPU left: the pool holds both
    try:
        assert psutil.Process(nice.pids[0]).nice() == 7
        assert set(pool.ray.get(nice.actors[0].niceness.remote())) == {7}
    finally:
        nice.close()


@pytest.mark.parametrize("value", ["20", "-1", "1.5"])
def test_bad_niceness_names_the_key(value):
    with pytest.raises(ConfigError, match=r"distributed\.niceness"):
        load_config(None, [f"distributed.niceness={value}"])


def test_a_worker_that_may_not_lower_its_niceness_says_so_naming_the_key(monkeypatch):
    """Without root or CAP_SYS_NICE a worker at 15 cannot go back to 0: it runs on at 15
    and says why, naming distributed.niceness (the driver prints it as a warning)."""
    from treesearch.distributed import set_niceness

    def refuse(which, who, value):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "setpriority", refuse)
    why = set_niceness(0)
    assert why.startswith("distributed.niceness = 0: Ray worker ") and "CAP_SYS_NICE" in why
