"""Where an app's work runs: this process (``local``) or worker actors on a Ray cluster.

    distributed:
      backend: local        # local | ray
      workers: 2            # Ray worker actors
      address: ""           # "": start a local cluster on loopback;
                            # "auto" or "ray://h:p" or "h:p": join one
      num_cpus: 1           # per worker
      num_gpus: 0           # per worker
      shard_problems: 0     # problems per shard; 0: one shard holding every problem
      retries: 3            # a worker that dies is restarted and its item re-run, this often
      niceness: 0           # every worker's niceness (0-19); Ray's own default is 15

One dataclass (``DistributedConfig``) for every app; ``check`` refuses bad values naming
the key. Ray starts its workers at niceness 15, so beside a job at niceness 0 they starve;
each worker sets itself (every thread) to ``niceness`` as it starts, 0 by default, and the
driver warns, naming the key, when a worker may not lower its niceness (that takes root or
CAP_SYS_NICE). ``cluster(cfg, code_paths=[dir])`` puts directories on every worker's
``sys.path`` before its state is built: where the user's own code (a ``module:factory``
task) lives, importable in the driver but not necessarily in a worker.

``cluster(cfg)`` connects (or starts a loopback-only local cluster with the
dashboard off) and yields a ``WorkerPool``, or None for the local backend; the cluster it
started is shut down on exit. ``WorkerPool.map`` runs work items on the actors, each item
a picklable object (a tuple, or a frozen dataclass such as self-play's ``WorkItem``) handed
to a method of the worker's state object, and returns the results
in item order, whichever worker ran them. Self-play (search and eval shards), decode
((strategy, budget) shards) and the study (whole cells) use it.

Faults: a worker whose process dies is restarted by Ray (``max_restarts``) and the item it
ran is re-run there (``max_task_retries``), ``retries`` times; the restarted actor builds
its state again from the spec every call carries. An item that raises stops ``map`` with
``DistributedError`` naming the item. A driver killed outright takes its local cluster
along (gcs and raylet share its fate; a watcher process kills the agents Ray leaves).
An address is probed before ``ray.init`` (TCP, then a gRPC handshake and, for a GCS, its
cluster-id call) so that nothing, or something that is not Ray, fails by name within
``CONNECT_TIMEOUT_S`` instead of hanging.

Results do not depend on the number of workers: the apps cut their problems into shards
of ``shard_problems`` and seed each shard from (run seed, round, stage, part, shard
index), never from a worker; the local backend runs the same shards in order, so a run
with 1, 2 or N workers writes the metrics of a local run with the same ``shard_problems``.

Ray is optional (``pip install -e '.[ray]'``, part of ``test``); it is imported only when
the ray backend is chosen. The run directory must be visible to every worker (one machine,
or a shared filesystem): workers load checkpoints from it themselves.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tqdm import tqdm

from treesearch.utils.knobs import need as _need
from treesearch.utils.recipes import ConfigError

DISTRIBUTED_BACKENDS = ("local", "ray")
CONNECT_TIMEOUT_S = 10.0  # an unreachable address fails within about this long
PLACE_TIMEOUT_S = 60.0  # workers the cluster cannot place fail after this long
# Ray on Linux swaps a loopback node address for the machine's; this switch keeps it
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class DistributedError(RuntimeError):
    """A cluster that cannot be reached or cannot place the workers, or a worker that
    failed; the message names the address, the resources or the work item."""


@dataclass
class DistributedConfig:
    backend: str = "local"
    workers: int = 2
    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    shard_problems: int = 0
    retries: int = 3
    niceness: int = 0  # every worker's niceness; Ray would start them at 15


def check(cfg, key: str = "distributed", cells: bool = False) -> None:
    """Refuse values that cannot work, naming the key (``ConfigError``). ``cells``: the
    app's work items are whole cells (the study), not shards of problems."""
    need = functools.partial(_need, source=cfg, prefix=f"{key}.", error=ConfigError)

    need(cfg.backend in DISTRIBUTED_BACKENDS, "backend",
         f"must be one of {', '.join(DISTRIBUTED_BACKENDS)}")
    need(cfg.workers >= 1, "workers", "must be >= 1")
    need(cfg.num_cpus > 0, "num_cpus", "must be > 0 (CPUs per worker)")
    need(cfg.num_gpus >= 0, "num_gpus", "must be >= 0 (GPUs per worker)")
    need(cfg.shard_problems >= 0, "shard_problems", "must be >= 0 (0: one shard)")
    need(cfg.retries >= 0, "retries", "must be >= 0 (restarts of a worker that died)")
    need(isinstance(cfg.niceness, int) and not isinstance(cfg.niceness, bool)
         and 0 <= cfg.niceness <= 19, "niceness",
         "must be an integer in [0, 19] (0: the priority of a plain job; Ray's default 15 "
         "lets the workers starve beside one)")
    if cfg.address:
        need(cfg.address == "auto" or _host_port(cfg.address) is not None, "address",
             "must be empty (start a local cluster), 'auto', 'HOST:PORT' or 'ray://HOST:PORT'")
    if cfg.backend == "ray" and not cells:
        need(cfg.shard_problems >= 1, "shard_problems",
             "the ray backend needs shards of >= 1 problems (0 puts every problem in one "
             "shard, which one worker would run alone); metrics depend on this value, never "
             "on the number of workers")


def shards(n: int, size: int) -> list[tuple[int, int]]:
    """[(lo, hi)] cutting range(n) into runs of ``size`` (0: one run of all n)."""
    size = size or max(n, 1)
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _host_port(address: str):
    """(host, port) of 'HOST:PORT' or 'ray://HOST:PORT'; None when it is neither."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    if parts.scheme != "ray" or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname, port) if port else None


def _reachable(address: str, timeout: float) -> None:
    """DistributedError unless a Ray cluster answers at ``address`` within ``timeout``:
    something accepts a TCP connection there, speaks gRPC, and (HOST:PORT) answers the
    GCS's cluster-id call. ``ray.init`` itself waits minutes on a port where something
    else listens, so nothing reaches it before this probe passes."""
    host, port = _host_port(address)
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise DistributedError(
            f"distributed.address {address!r}: no Ray cluster reachable at {host}:{port} "
            f"within {timeout:g} s ({type(exc).__name__}: {exc}); start one with "
            f"`ray start --head` there, or leave the address empty for a local cluster"
        ) from None
    import grpc  # lazy: a dependency of ray

    left = max(0.5, timeout - (time.monotonic() - start))
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        _handshake(grpc, channel, left)
        if not address.startswith("ray://"):  # the GCS itself (ray:// is Ray Client's)
            from ray.core.generated import (
                gcs_service_pb2 as pb,  # lazy: ray is optional
            )
            from ray.core.generated import (
                gcs_service_pb2_grpc as rpc,  # lazy: ray is optional
            )

            try:
                rpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    pb.GetClusterIdRequest(),
                    timeout=max(0.5, timeout - (time.monotonic() - start)))
            except grpc.RpcError as exc:  # a GCS with token authentication on says so
                if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
                    raise
    except (grpc.FutureTimeoutError, grpc.RpcError) as exc:
        why = (exc.code().name if isinstance(exc, grpc.RpcError) else "no gRPC handshake")
        if address.startswith("ray://"):
            service = "a Ray Client server"
            want = "the head node's Ray Client address (ray://HOST:10001 by default)"
        else:
            service = "a Ray GCS"
            want = ("the head node's GCS address (HOST:6379 by default, printed by "
                    "`ray start --head`)")
        raise DistributedError(
            f"distributed.address {address!r}: something listens at {host}:{port} but it is "
            f"not {service} (within {timeout:g} s: {why}); give {want}, or "
            f"'auto' on a node of the cluster") from None
    finally:
        channel.close()


def _handshake(grpc, channel, timeout: float) -> None:
    """Wait until ``channel`` is ready; ``grpc.FutureTimeoutError`` once it fails (the TCP
    connection worked, so a failed handshake means the other side does not speak gRPC) or
    ``timeout`` passes (a listener that never answers)."""
    states, ready = [], threading.Event()

    def seen(state):
        states.append(state)
        if state in (grpc.ChannelConnectivity.READY,
                     grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            ready.set()

    channel.subscribe(seen, try_to_connect=True)
    try:
        if not ready.wait(timeout) or states[-1] != grpc.ChannelConnectivity.READY:
            raise grpc.FutureTimeoutError()
    finally:
        channel.unsubscribe(seen)


def worker_threads(cfg) -> int:
    """torch threads of one worker: the CPUs the cluster reserves for it (``num_cpus``,
    rounded down, at least 1), whatever the driver's own count. A worker that took the
    driver's (e.g. ``policy.threads=2`` for the stages the driver runs) would put two
    workers' four threads on two cores."""
    return max(1, int(cfg.num_cpus))


@contextmanager
def cluster(cfg, connect_timeout: float = CONNECT_TIMEOUT_S,
            place_timeout: float = PLACE_TIMEOUT_S, code_paths=()):
    """Yield None for the local backend; for ray, a ``WorkerPool`` of ``cfg.workers``
    actors (not yet set up) at niceness ``cfg.niceness``, ``code_paths`` on their
    ``sys.path``. An empty address starts a local cluster bound to 127.0.0.1 with the
    dashboard off, sized for the workers, and stops it on exit; otherwise the cluster at
    the address is joined (and left running)."""
    if cfg.backend == "local":
        yield None
        return
    import ray  # lazy: ray is optional (the ray extra), needed only for backend=ray

    if cfg.address and cfg.address != "auto":
        _reachable(cfg.address, connect_timeout)  # before anything else: bounded, named
    if ray.is_initialized():
        raise DistributedError("Ray is already initialised in this process")
    try:
        if not cfg.address:
            with _loopback_only(ray):
                ray.init(num_cpus=max(1, round(cfg.workers * cfg.num_cpus)),
                         num_gpus=round(cfg.workers * cfg.num_gpus) or None,
                         include_dashboard=False, _node_ip_address="127.0.0.1",
                         logging_level="WARNING")
        else:
            ray.init(address=cfg.address, logging_level="WARNING")
    except DistributedError:
        raise
    # 'auto' without a cluster, ...
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        what = (f"distributed.address {cfg.address!r}: cannot connect to a Ray cluster"
                if cfg.address else "cannot start a local Ray cluster")
        raise DistributedError(f"{what} ({type(exc).__name__}: {exc})") from None
    reaper = _reaper(ray) if not cfg.address else None
    try:
        pool = WorkerPool(cfg, place_timeout, code_paths)
        try:
            yield pool
        finally:
            pool.close()
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.kill()
            reaper.wait()


# Kills what is left of a local cluster once its driver is gone: a driver killed with
# SIGKILL cannot stop its cluster, and while Ray's gcs_server and raylet die with it,
# its agents (dashboard, runtime env) may linger (ray-project/ray#52385).
_REAPER = """
import sys, time
try:
    import psutil
except ImportError:
    sys.path.insert(0, sys.argv[2])
    import psutil
driver, seen = psutil.Process(int(sys.argv[1])), {}
while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
    try:
        seen.update((p.pid, p) for p in driver.children(recursive=True))
    except psutil.Error:
        pass
    time.sleep(0.5)
for p in seen.values():
    try:
        if p.pid != psutil.Process().pid and p.is_running():
            p.kill()
    except psutil.Error:
        pass
"""


def _reaper(ray):
    """A watcher process of this driver that kills the local cluster's processes (the
    ones it saw, by identity) if the driver dies without stopping them; stopped on exit."""
    vendored = os.path.join(os.path.dirname(ray.__file__), "thirdparty_files")
    return subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid()), vendored],
                            stdin=subprocess.DEVNULL, start_new_session=True)


@contextmanager
def _loopback_only(ray):
    """While a local cluster starts: its node address is 127.0.0.1, so every Ray process
    (GCS, raylet, agents, workers) listens on loopback only. Ray on Linux turns a loopback
    ``_node_ip_address`` into the machine's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
    is off (read at import, hence the constant too); the environment variable also
    reaches the processes the cluster spawns. Both are restored afterwards."""
    constants = ray._private.ray_constants
    old_env, old_flag = os.environ.get(_LOCAL_ONLY_ENV), constants.ENABLE_RAY_CLUSTER
    os.environ[_LOCAL_ONLY_ENV], constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_LOCAL_ONLY_ENV, None)
        else:
            os.environ[_LOCAL_ONLY_ENV] = old_env


def set_niceness(value: int) -> str | None:
    """Every thread of this process to niceness ``value`` (on Linux niceness is per
    thread; threads started later inherit it). None when done, else why not, naming the
    ``distributed.niceness`` key (lowering niceness needs root or CAP_SYS_NICE)."""
    tasks = "/proc/self/task"
    threads = [int(t) for t in os.listdir(tasks)] if os.path.isdir(tasks) else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except ProcessLookupError:  # a thread that has ended
            continue
        except PermissionError as exc:
            now = os.getpriority(os.PRIO_PROCESS, 0)
            return (f"distributed.niceness = {value}: Ray worker {os.getpid()} may not lower "
                    f"its niceness from {now} ({exc}; it takes root or CAP_SYS_NICE), so it "
                    f"runs at {now} and may starve beside jobs at niceness {value}; set "
                    f"distributed.niceness={now} to accept that")
    return None


class _Worker:
    """A Ray actor holding one state object, built on first use from the pool's spec
    ``(key, factory, args)``, which travels with every call: an actor Ray restarted after
    its process died rebuilds the state by itself before it re-runs the item it lost. As
    it starts (and restarts) it sets its niceness and puts ``code_paths`` on sys.path; once
    a state is built it runs torch at ``threads`` (``worker_threads``), whatever count the
    app's factory set for its driver."""

    def __init__(self, niceness: int = 0, code_paths=(), threads: int | None = None):
        self.key, self.state, self.threads = None, None, threads
        self.nice_warning = set_niceness(niceness)
        have = {os.path.realpath(p) for p in sys.path if p}
        for path in reversed(code_paths):
            if os.path.realpath(path) not in have:
                sys.path.insert(0, path)

    def ready(self) -> tuple[int, str | None]:
        """(this worker's pid, why its niceness is not the configured one or None)."""
        return os.getpid(), self.nice_warning

    def niceness(self) -> list[int]:
        """The niceness of each of this worker's threads (``/proc``; Linux)."""
        tasks = "/proc/self/task"
        return [os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(tasks)]

    def _state(self, spec):
        key, factory, args = spec
        if self.key != key:
            self.state, self.key = factory(*args), key
            if self.threads:  # after the factory: it may set the driver's count
                import torch  # lazy: the driver side of this module never needs torch

                torch.set_num_threads(self.threads)
        return self.state

    def setup(self, spec) -> int:
        self._state(spec)
        return os.getpid()

    def call(self, spec, method: str, item):
        return getattr(self._state(spec), method)(item)


class WorkerPool:
    """``cfg.workers`` actors of ``cfg.num_cpus`` / ``cfg.num_gpus`` each. An actor whose
    process dies (killed, out of memory, its node lost) is restarted by Ray up to
    ``cfg.retries`` times, and the item it was running is re-run on the restarted actor
    (Ray's ``max_restarts`` / ``max_task_retries``); an item that raises is not retried."""

    def __init__(self, cfg, place_timeout: float = PLACE_TIMEOUT_S, code_paths=()):
        import ray  # lazy: ray is optional (the ray extra), needed only for backend=ray

        self.ray, self.cfg, self.spec, self.pids = ray, cfg, None, []
        actor = ray.remote(_Worker).options(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus,
                                            max_restarts=cfg.retries,
                                            max_task_retries=cfg.retries)
        niceness = getattr(cfg, "niceness", 0)
        self.actors = [actor.remote(niceness, [str(p) for p in code_paths],
                                    worker_threads(cfg)) for _ in range(cfg.workers)]
        try:
            ready = ray.get([a.ready.remote() for a in self.actors], timeout=place_timeout)
            self.pids = [pid for pid, _ in ready]
            for warning in dict.fromkeys(w for _, w in ready if w):
                print(f"warning: {warning}", file=sys.stderr)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise DistributedError(
                f"the cluster could not place {cfg.workers} workers of num_cpus={cfg.num_cpus}, "
                f"num_gpus={cfg.num_gpus} within {place_timeout:g} s (it has "
                f"{ray.cluster_resources()}); lower distributed.workers or the per-worker "
                f"resources") from None

    def setup(self, factory, *args) -> None:
        """The workers' state from now on: ``factory(*args)`` (a module-level function, so
        it travels by reference), built on every worker now (its errors named here) and
        again by a worker Ray restarts."""
        self.spec = self.ray.put((os.urandom(8).hex(), factory, args))
        self.pids = self._get([a.setup.remote(self.spec) for a in self.actors], "setup")

    def map(self, method: str, items: list, names: list[str] | None = None,
            desc: str | None = None) -> list:
        """``state.<method>(item)`` for every item, on whichever worker is free next;
        results in item order. A failing item stops the map with DistributedError naming
        it (``names[i]``, else the item) and the worker's error; the items still running
        are cancelled and nothing of theirs is returned. desc: a tqdm bar of the items
        finished, under this name (None: no bar)."""
        if self.spec is None:
            raise DistributedError("WorkerPool.map before setup: the workers have no state")
        ray = self.ray
        results: list = [None] * len(items)
        pending = {}
        free = list(self.actors)
        queue = list(enumerate(items))
        bar = tqdm(total=len(items), desc=desc, unit="item", disable=desc is None or not items,
                   dynamic_ncols=True)
        try:
            while queue or pending:
                while queue and free:
                    i, item = queue.pop(0)
                    actor = free.pop(0)
                    pending[actor.call.remote(self.spec, method, item)] = (i, actor)
                done, _ = ray.wait(list(pending), num_returns=1)
                i, actor = pending.pop(done[0])
                results[i] = self._get([done[0]], names[i] if names else items[i])[0]
                free.append(actor)
                bar.update(1)
                bar.set_postfix_str(str(names[i] if names else i), refresh=False)
        finally:
            bar.close()
            for ref in pending:  # a failure elsewhere: what still runs is abandoned
                with suppress(Exception):
                    ray.cancel(ref)
        return results

    def _get(self, refs, what):
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayActorError as exc:
            raise DistributedError(
                f"a worker died on {what!r} and was not brought back after "
                f"{self.cfg.retries} restarts (distributed.retries): {exc}") from None
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise DistributedError(f"a worker failed on {what!r}: {type(cause).__name__}: "
                                   f"{cause}") from None

    def close(self) -> None:
        for a in self.actors:
            with suppress(ValueError, self.ray.exceptions.RayError):  # already gone
                self.ray.kill(a)
        self.actors = []
