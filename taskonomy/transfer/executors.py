"""Where the independent trainings inside one stage run: in process, in forked workers, or on Ray.

A stage hands :func:`map_jobs` a function ``fn(context, job) -> result``, one shared ``context`` (the
cached source representations and labels: large, read-only) and a list of small ``jobs`` (target
names). The results come back in job order to the driver, which writes the stage's outputs, so DVC
records them as usual whatever ran the jobs.

- ``local`` with ``workers=1``: one job after another in this process, ``threads`` intra-op threads.
- ``local`` with ``workers>1``: a pool of forked processes with ``threads`` threads each; the context
  reaches them through fork (copy-on-write), not pickling, so nothing is reloaded or re-encoded.
- ``ray``: each job is a Ray task with ``cpus_per_job`` / ``gpus_per_job`` (fractions allowed) on the
  cluster at ``address`` (else ``RAY_ADDRESS``, else a local instance started here), with the project's
  package shipped to the workers (``runtime_env``). A context that says which of its parts a job needs
  (``job_parts``; e.g. one source's representations and one target's data) has each part stored once,
  as numpy arrays that the workers of a node share without copying, and each job given only its own; a
  job resolves its device where it runs (the GPU Ray gave it, else the CPU; CUDA needs
  ``gpus_per_job > 0``); a job whose worker or node dies is retried (``RAY_RETRIES``). Ray is an
  optional extra (``pip install -e '.[ray]'``) imported only here, only when asked for.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from taskonomy.errors import TaskonomyError

Job = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run a stage's jobs (built from ``transfer.executor`` / ``transfer.ray`` and the cores)."""
    kind: str = "local"
    workers: int = 1
    threads: int = 0
    ray_address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    device: str = "auto"          # what the params ask for; a Ray job resolves it where it runs


class SplitContext:
    """What a context shipped to Ray in parts needs besides its own ``job_parts(job)``: parts are named
    ``'<field>:<name>'``, ``<field>`` one of the dict fields listed in ``PARTS`` (a dataclass), and a job's
    context is rebuilt from an empty shell and its parts (:func:`map_jobs` with ``executor: ray``)."""
    PARTS: tuple[str, ...] = ()

    def part(self, key: str) -> Any:
        field, name = key.split(":", 1)
        return getattr(self, field)[name]

    def shell(self):
        return dataclasses.replace(self, **{field: {} for field in self.PARTS})

    def assemble(self, parts: dict[str, Any], device: str):
        grouped: dict[str, dict[str, Any]] = {field: {} for field in self.PARTS}
        for key, value in parts.items():
            field, name = key.split(":", 1)
            grouped[field][name] = value
        return dataclasses.replace(self, **grouped, device=device)


def map_jobs(fn: Job, context: Any, jobs: Sequence[Any], spec: ExecutorSpec = ExecutorSpec()) -> list[Any]:
    """``[fn(context, job) for job in jobs]``, run as ``spec`` says; results in job order."""
    jobs = list(jobs)
    if spec.kind == "ray":
        return _map_ray(fn, context, jobs, spec)
    if spec.kind != "local":
        raise TaskonomyError(f"executor: unknown kind {spec.kind!r} (known: local, ray)")
    workers = min(spec.workers, len(jobs))
    if workers <= 1:
        previous = torch.get_num_threads()
        if spec.threads:
            torch.set_num_threads(spec.threads)
        try:
            return [fn(context, job) for job in jobs]
        finally:
            torch.set_num_threads(previous)
    return _map_fork(fn, context, jobs, workers, spec.threads or 1)


# --------------------------------------------------------------------------------------------------
# Forked workers
# --------------------------------------------------------------------------------------------------

_FORKED: tuple[Job, Any, list] | None = None  # set in the parent just before the fork


def _fork_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _fork_call(i: int) -> Any:
    fn, context, jobs = _FORKED
    return fn(context, jobs[i])


def _map_fork(fn: Job, context: Any, jobs: list, workers: int, threads: int) -> list[Any]:
    global _FORKED
    if "fork" not in multiprocessing.get_all_start_methods():
        raise TaskonomyError("executor: workers > 1 needs the 'fork' start method (Linux, macOS)")
    _FORKED = (fn, context, jobs)
    try:
        with multiprocessing.get_context("fork").Pool(workers, _fork_init, (threads,)) as pool:
            # chunksize 1: jobs differ a lot in cost (dense decoders vs FC heads); hand them out singly.
            return pool.map(_fork_call, range(len(jobs)), chunksize=1)
    finally:
        _FORKED = None


# --------------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------------

RAY_RETRIES = 3          # reruns of a job whose worker process or node died (an error it raised is not retried)
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Tensor:
    """A torch tensor travelling as a numpy array: Ray stores numpy arrays once and workers on a node read
    them in place (zero-copy), where a torch tensor would be copied into every job."""
    array: np.ndarray


def to_numpy(tree: Any) -> Any:
    """``tree`` (dicts, lists, tuples, dataclasses) with every torch tensor as a :class:`_Tensor`."""
    if isinstance(tree, torch.Tensor):
        return _Tensor(tree.detach().cpu().numpy())
    return _map_tree(tree, to_numpy)


def to_torch(tree: Any) -> Any:
    """:func:`to_numpy` undone; the tensors share the (read-only) arrays' memory."""
    if isinstance(tree, _Tensor):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(tree.array)
    return _map_tree(tree, to_torch)


def _map_tree(tree: Any, convert: Callable[[Any], Any]) -> Any:
    if isinstance(tree, dict):
        return {k: convert(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(convert(v) for v in tree)
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        changed = {f.name: convert(getattr(tree, f.name)) for f in dataclasses.fields(tree) if f.init}
        changed = {k: v for k, v in changed.items() if v is not getattr(tree, k)}
        return dataclasses.replace(tree, **changed) if changed else tree
    return tree


def init_ray(address: str | None, what: str = "transfer.ray.address"):
    """Connect to the cluster at ``address`` / ``RAY_ADDRESS`` (``host:port`` of its head, ``auto``, or
    ``ray://host:port``), or start a local instance; the project's package is shipped to every worker
    (``runtime_env`` ``py_modules``), so nodes need only its dependencies installed."""
    try:
        import ray
    except ImportError:
        raise TaskonomyError(f"{what}: Ray needs the ray extra: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local"):
        _probe(address, what)
    kwargs = dict(address=address) if address else dict(num_cpus=os.cpu_count(), include_dashboard=False)
    runtime_env = {"py_modules": [str(PACKAGE_DIR)], "excludes": ["__pycache__"]}
    try:
        ray.init(**kwargs, runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise TaskonomyError(f"{what}: cannot connect to the Ray cluster at {address}: {str(err).splitlines()[0]}") from None
    return ray


def _probe(address: str, what: str, timeout: float = 5.0) -> None:
    """One line, at once, when nothing answers at ``address`` (Ray itself retries for a minute)."""
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise TaskonomyError(f"{what}: {address!r}: expected HOST:PORT of the cluster's head (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise TaskonomyError(f"{what}: no Ray cluster answers at {address} ({err.strerror or err})") from None


def check_ray_resources(ray, cpus: float, gpus: float, what: str) -> None:
    """One line when no node of the cluster has ``cpus`` CPUs and ``gpus`` GPUs for a job (Ray would
    otherwise leave the job pending for ever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        return
    largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    raise TaskonomyError(f"{what}: a job asks for {cpus:g} CPU and {gpus:g} GPU, and no node of the Ray cluster "
                         f"has them (largest: {largest.get('CPU', 0):g} CPU, {largest.get('GPU', 0):g} GPU, "
                         f"{len(nodes)} nodes)")


def _job_device(gpus: float) -> str:
    """The device a Ray job trains on, resolved where it runs: the GPU Ray gave it, else the CPU."""
    if gpus > 0:
        if not torch.cuda.is_available():
            raise TaskonomyError(f"Ray gave a job {gpus:g} GPU on {socket.gethostname()}, where torch sees no CUDA device")
        return "cuda"
    return "cpu"


def _ray_call(fn: Job, shell: Any, job: Any, threads: int, gpus: float, keys: list[str], *parts: Any) -> Any:
    torch.set_num_threads(threads)
    resolved = _job_device(gpus)
    if keys:
        context = shell.assemble(dict(zip(keys, (to_torch(p) for p in parts))), resolved)
    else:
        context = to_torch(parts[0])
        if dataclasses.is_dataclass(context) and "device" in {f.name for f in dataclasses.fields(context)}:
            context = dataclasses.replace(context, device=resolved)
    return fn(context, job)


def _map_ray(fn: Job, context: Any, jobs: list, spec: ExecutorSpec) -> list[Any]:
    """Each job a Ray task given only its parts of the context (a context with ``job_parts`` / ``part`` /
    ``shell`` / ``assemble``: each part stored once, as numpy; else the whole context, once); failed
    workers retried; results collected as they finish; a job's error stops the stage, naming the job."""
    if spec.device == "cuda" and spec.gpus_per_job <= 0:
        raise TaskonomyError("transfer.ray.gpus_per_job: 0 with transfer.device: cuda; a Ray job has a GPU only if it "
                             "asks for one (1, or a fraction such as 0.25 to share one)")
    ray = init_ray(spec.ray_address)
    check_ray_resources(ray, spec.cpus_per_job, spec.gpus_per_job, "transfer.ray.cpus_per_job / gpus_per_job")
    remote = ray.remote(num_cpus=spec.cpus_per_job, num_gpus=spec.gpus_per_job, max_retries=RAY_RETRIES,
                        retry_exceptions=False)(_ray_call)
    threads = max(1, int(spec.cpus_per_job))
    if hasattr(context, "job_parts"):
        keys = [list(context.job_parts(job)) for job in jobs]
        refs = {k: ray.put(to_numpy(context.part(k))) for k in sorted({k for ks in keys for k in ks})}
        shell = ray.put(context.shell())
        pending = {remote.remote(fn, shell, job, threads, spec.gpus_per_job, ks, *(refs[k] for k in ks)): i
                   for i, (job, ks) in enumerate(zip(jobs, keys))}
    else:
        whole = ray.put(to_numpy(context))
        pending = {remote.remote(fn, None, job, threads, spec.gpus_per_job, [], whole): i for i, job in enumerate(jobs)}
    results: list[Any] = [None] * len(jobs)
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1)
        for ref in finished:
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except ray.exceptions.RayError as err:
                for other in pending:
                    ray.cancel(other)
                cause = getattr(err, "cause", None)
                if isinstance(cause, TaskonomyError):
                    raise TaskonomyError(f"job {jobs[i]!r} on the Ray cluster: {cause}") from None
                raise TaskonomyError(f"job {jobs[i]!r} failed on the Ray cluster ({RAY_RETRIES} retries): "
                                     f"{str(err).strip().splitlines()[-1]}") from None
    return results
