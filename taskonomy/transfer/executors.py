"""Where the independent trainings inside one stage run: in process, in forked workers, or on Ray.

A stage hands :func:`map_jobs` a function ``fn(context, job) -> result``, one shared ``context`` (the
cached source representations and labels: large, read-only) and a list of small ``jobs`` (target
names). The results come back in job order to the driver, which writes the stage's outputs, so DVC
records them as usual whatever ran the jobs.

- ``local`` with ``workers=1``: one job after another in this process, ``threads`` intra-op threads.
- ``local`` with ``workers>1``: a pool of forked processes with ``threads`` threads each; the context
  reaches them through fork (copy-on-write), not pickling, so nothing is reloaded or re-encoded.
- ``ray``: each job is a Ray task with ``cpus_per_job`` / ``gpus_per_job`` (fractions allowed) on the
  cluster at ``address`` (else ``RAY_ADDRESS``, else a local instance started here); the context is
  put in the object store once. Ray is an optional extra (``pip install -e '.[ray]'``) imported only
  here, only when asked for.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

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

def _ray_call(fn: Job, context: Any, job: Any, threads: int) -> Any:
    torch.set_num_threads(threads)
    return fn(context, job)


def init_ray(address: str | None):
    """Connect to the cluster at ``address`` / ``RAY_ADDRESS``, or start a local instance."""
    try:
        import ray
    except ImportError:
        raise TaskonomyError("transfer.executor: 'ray' needs the ray extra: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = dict(address=address) if address else dict(num_cpus=os.cpu_count(), include_dashboard=False)
        try:
            ray.init(**kwargs, log_to_driver=False, configure_logging=False)
        except ConnectionError as err:
            raise TaskonomyError(f"transfer.ray.address: cannot reach the Ray cluster at {address}: {err}") from None
    return ray


def _map_ray(fn: Job, context: Any, jobs: list, spec: ExecutorSpec) -> list[Any]:
    ray = init_ray(spec.ray_address)
    remote = ray.remote(num_cpus=spec.cpus_per_job, num_gpus=spec.gpus_per_job)(_ray_call)
    threads = max(1, int(spec.cpus_per_job))
    context_ref = ray.put(context)
    return ray.get([remote.remote(fn, context_ref, job, threads) for job in jobs])
