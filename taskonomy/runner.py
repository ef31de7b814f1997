"""Run the pipeline's ready stages N at a time, on this machine or on a Ray cluster, with DVC still the
record (issue 27).

``dvc repro`` runs one stage at a time (iterative/dvc#755), and a second ``dvc repro`` waits on the
repository lock. This runner uses DVC's own graph and bookkeeping through its Python API and adds only
the scheduling:

- a stage starts once every stage it depends on has finished (run, or found unchanged); with targets,
  only they and the stages they depend on are brought up to date, as ``dvc repro <targets>`` does;
- whether it must run is DVC's ``Stage.changed()``; an identical run in DVC's run cache is restored
  instead of run, as ``dvc repro`` does;
- its outputs are removed and its command runs in a subprocess (``DVC_ROOT`` / ``DVC_STAGE`` set as DVC
  sets them), its output going to ``logs/stages/<stage>.log``;
- once it succeeds, or has been restored, the stage is saved, its outputs committed to the cache and its
  ``dvc.lock`` entry written (``Stage.save`` with the run cache, ``commit``, ``dump``), under the
  repository lock.

So ``dvc.lock``, the cache and ``dvc status`` end as a serial ``dvc repro`` leaves them, and an edit of
one task's params reruns only the stages DVC finds changed. A stage that fails is named; the stages
already running finish and are recorded; no new stage starts.

Where a stage runs:

- on this machine (default): with GPUs, each running stage is given one (``CUDA_VISIBLE_DEVICES``; with
  more jobs than GPUs, the least busy one). With more than one job, OpenMP threads wait passively
  (``OMP_WAIT_POLICY=PASSIVE``; it changes no result): two stages of every core each, spinning while the
  other held the cores, ran 1.2x slower than one after the other, and in a full run task networks of
  10 s took 40 to 105 s.
  Cores are shared out only when asked (``share_cores``): ``threads: 0`` then means cores / N
  (``TASKONOMY_CORES``), faster on a CPU (1.33x for the default's task networks on 2 cores) but with a
  thread count that changes results (their test losses by up to 3.4%), so the lock's hashes are then
  those of that sharing, not of a serial ``dvc repro``.
- on a Ray cluster (``ray_address``): each stage's command is a Ray task asking for ``cpus_per_stage`` /
  ``gpus_per_stage``, placed by Ray on any node that has them and retried there if its worker or node
  dies; ``threads: 0`` is the CPUs it asked for. Every node must see the repository at the same path
  (shared storage); the recording stays here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from taskonomy.errors import TaskonomyError
from taskonomy.stage import CORES_ENV   # taskonomy.nets.train.given_cores reads it (the runner imports no torch code)

LOG_DIR = Path("logs") / "stages"
RAY_RETRIES = 2          # reruns of a stage whose Ray worker or node died (not of a stage that failed)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _log_path(root: Path, name: str) -> Path:
    return root / LOG_DIR / f"{name.replace('/', '_')}.log"


def _commands(stage) -> list[str]:
    return stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]


def run_commands(commands: Sequence[str], wdir: str, env: dict[str, str], log: Path) -> int:
    """The stage's command(s) as DVC runs them (shell, its working directory), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        for command in commands:
            code = subprocess.run(command, shell=True, cwd=wdir, env=env, stdout=out,
                                  stderr=subprocess.STDOUT).returncode
            if code:
                return code
    return 0


def _record(stage) -> None:
    """What ``dvc repro`` does once a stage has run or been restored from the run cache (call it under
    the repository lock): hash its dependencies and outputs and save the run to the run cache (unless
    an output outside metrics and plots is uncached), commit the outputs to the cache, write the lock entry."""
    no_cache = any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))
    stage.save(run_cache=not no_cache)
    stage.commit()
    stage.dump(update_pipeline=False)


# --------------------------------------------------------------------------------------------------
# Where stages run
# --------------------------------------------------------------------------------------------------

class LocalPlacer:
    """Stages as subprocesses here; with GPUs, one per running stage."""

    def __init__(self, root: Path, jobs: int, share_cores: bool, gpus: Sequence[str] | None = None):
        self.root = root
        self.gpus = list(_visible_gpus() if gpus is None else gpus)
        self.env: dict[str, str] = {}
        if jobs > 1 and "OMP_WAIT_POLICY" not in os.environ:
            self.env["OMP_WAIT_POLICY"] = "PASSIVE"
        if share_cores:
            self.env[CORES_ENV] = str(max(1, _cores() // jobs))
        self.busy: Counter[str] = Counter()
        self.lock = threading.Lock()

    def describe(self) -> str:
        shares = f", {self.env[CORES_ENV]} core(s) each" if CORES_ENV in self.env else ""
        return f"this machine{f', {len(self.gpus)} GPU(s)' if self.gpus else ''}{shares}"

    def run(self, name: str, stage) -> tuple[int, str]:
        env = {**os.environ, **self.env, "DVC_ROOT": str(self.root), "DVC_STAGE": name}
        gpu = None
        if self.gpus:
            with self.lock:
                gpu = min(self.gpus, key=lambda g: self.busy[g])
                self.busy[gpu] += 1
            env["CUDA_VISIBLE_DEVICES"] = gpu
        try:
            code = run_commands(_commands(stage), stage.wdir, env, _log_path(self.root, name))
            return code, f"GPU {gpu}" if gpu is not None else "here"
        finally:
            if gpu is not None:
                with self.lock:
                    self.busy[gpu] -= 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _visible_gpus() -> list[str]:
    """The GPUs a stage may be given: ``CUDA_VISIBLE_DEVICES`` when set, else every one torch counts."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _ray_run_stage(commands: list[str], wdir: str, dvc_env: dict[str, str]) -> tuple[int, str, str]:
    """A Ray task: the stage's commands on the node Ray chose (its Python first on PATH); returns the exit
    code, the node's id and the output."""
    import tempfile

    import ray

    env = {**os.environ, **dvc_env, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "stage.log"
        code = run_commands(commands, wdir, env, log)
        return code, ray.get_runtime_context().get_node_id(), log.read_text(errors="replace")


class RayPlacer:
    """Stages as Ray tasks on any node of the cluster with the resources they ask for."""

    def __init__(self, root: Path, address: str, cpus: float, gpus: float):
        from taskonomy.transfer.executors import check_ray_resources, init_ray

        self.root = root
        self.ray = init_ray(address, what="--ray")
        self.address = address
        check_ray_resources(self.ray, cpus, gpus, what="--cpus-per-stage / --gpus-per-stage")
        self.remote = self.ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_RETRIES)(_ray_run_stage)
        self.cores = str(max(1, int(cpus)))

    def describe(self) -> str:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return f"the Ray cluster at {self.address} ({len(nodes)} nodes)"

    def run(self, name: str, stage) -> tuple[int, str]:
        dvc_env = {"DVC_ROOT": str(self.root), "DVC_STAGE": name, CORES_ENV: self.cores}
        try:
            code, node, output = self.ray.get(self.remote.remote(_commands(stage), str(stage.wdir), dvc_env))
        except self.ray.exceptions.RayError as err:
            output, code, node = f"Ray could not run the stage: {err}\n", 255, "?"
        log = _log_path(self.root, name)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"# ran on Ray node {node}\n{output}")
        return code, f"node {node[:8]}"


# --------------------------------------------------------------------------------------------------
# The scheduler
# --------------------------------------------------------------------------------------------------

@contextmanager
def _in(root: Path):
    """DVC's Python API resolves stage paths against the working directory: run from the project's root."""
    before = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(before)


def _collect(repo, targets: Sequence[str]) -> dict:
    """``addressing -> stage`` of every stage with a command, or of the targets and what they depend on."""
    from dvc.exceptions import DvcException

    if not targets:
        return {s.addressing: s for s in repo.index.graph.nodes if s.cmd}
    chosen = {}
    for target in targets:
        try:
            stages = repo.stage.collect(target, with_deps=True)
        except DvcException as err:
            raise TaskonomyError(f"target {target!r}: not a stage of this pipeline ({err})") from None
        chosen.update({s.addressing: s for s in stages if s.cmd})
    return chosen


def repro(jobs: int, root: Path | str = ".", targets: Sequence[str] = (), ray_address: str | None = None,
          cpus_per_stage: float = 1.0, gpus_per_stage: float = 0.0, gpus: Sequence[str] | None = None,
          share_cores: bool = False) -> int:
    """Bring the stages of the DVC project at ``root`` (every one, or ``targets`` and their upstream) up
    to date, ``jobs`` stages at a time, here or on the Ray cluster at ``ray_address``; 0 on success, 1 if a
    stage failed (the failure named on stderr, with its log). ``gpus``: the GPU ids to hand out here
    (default: those visible). ``share_cores``: ``threads: 0`` is cores / ``jobs`` for each stage here."""
    if jobs < 1:
        raise TaskonomyError(f"--jobs: {jobs}: run at least 1 stage at a time")
    root = Path(root).resolve()
    with _in(root):
        return _repro(jobs, root, targets, ray_address, cpus_per_stage, gpus_per_stage, gpus, share_cores)


def _repro(jobs, root, targets, ray_address, cpus_per_stage, gpus_per_stage, gpus, share_cores) -> int:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage.cache import RunCacheNotFoundError

    try:
        repo = Repo(str(root))
    except DvcException as err:
        raise TaskonomyError(f"{root}: not a DVC project ({err})") from None
    graph = repo.index.graph                          # an edge goes from a stage to one it depends on
    stages = _collect(repo, targets)
    upstream = {name: {d.addressing for d in graph.successors(s) if d.addressing in stages}
                for name, s in stages.items()}
    placer = (RayPlacer(root, ray_address, cpus_per_stage, gpus_per_stage) if ray_address
              else LocalPlacer(root, jobs, share_cores, gpus))
    _say(f"repro: {len(stages)} stages, up to {jobs} at a time on {placer.describe()}")
    done: set[str] = set()
    running: dict[str, Future] = {}
    failed: list[tuple[str, int]] = []
    ran: list[str] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        while True:
            if not failed:
                for name, stage in stages.items():
                    if len(running) >= jobs:
                        break
                    if name in done or name in running or not upstream[name] <= done:
                        continue
                    with repo.lock:
                        if not stage.changed():
                            done.add(name)
                            continue
                        try:
                            repo.stage_cache.restore(stage)
                            _record(stage)
                            _say(f"{name}: restored from the run cache")
                            done.add(name)
                            continue
                        except RunCacheNotFoundError:
                            pass
                        stage.remove_outs(ignore_remove=False, force=False)
                    _say(f"{name}: running ({len(running) + 1} of {jobs} at once)")
                    running[name] = pool.submit(placer.run, name, stage)
            if not running:
                if failed or done == set(stages):
                    break
                continue                              # stages found unchanged made others ready
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for name in [n for n, f in running.items() if f in finished]:
                code, where = running.pop(name).result()
                if code:
                    failed.append((name, code))
                    _say(f"{name}: failed (exit {code}, {where}); see {_log_path(root, name).relative_to(root)}")
                    continue
                with repo.lock:
                    _record(stages[name])
                done.add(name)
                ran.append(name)
                _say(f"{name}: done, recorded in dvc.lock ({where})")
    seconds = time.perf_counter() - t0
    if failed:
        names = ", ".join(f"'{n}' (exit {c})" for n, c in failed)
        print(f"error: stage {names} failed; the stages that finished are recorded in dvc.lock", file=sys.stderr)
        return 1
    _say(f"repro: {len(ran)} stages run, {len(stages) - len(ran)} up to date, {jobs} at a time, {seconds:.1f} s")
    return 0
