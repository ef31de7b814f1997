"""Run the pipeline's ready stages N at a time on this machine, with DVC still the record (issue 27, first part).

``dvc repro`` runs one stage at a time (iterative/dvc#755), and a second ``dvc repro`` waits on the
repository lock. This runner uses DVC's own graph and bookkeeping through its Python API and adds only
the scheduling:

- a stage starts once every stage it depends on has finished (run, or found unchanged);
- whether it must run is DVC's ``Stage.changed()``; an identical run in DVC's run cache is restored
  instead of run, as ``dvc repro`` does;
- its outputs are removed and its command runs in a subprocess (``DVC_ROOT`` / ``DVC_STAGE`` set as DVC
  sets them), its output going to ``logs/stages/<stage>.log``;
- once it succeeds, or has been restored, the stage is saved, its outputs committed to the cache and its
  ``dvc.lock`` entry written (``Stage.save`` with the run cache, ``commit``, ``dump``), under the
  repository lock.

So ``dvc.lock``, the cache and ``dvc status`` end as a serial ``dvc repro`` leaves them, and an edit of
one task's params reruns only the stages DVC finds changed. A stage that fails is named; the stages
already running finish and are recorded; no new stage starts. Each stage runs with the threads its
params give it (``threads: 0`` is every core, for every stage at once): the thread count changes
results in their last digits, so the runner never changes it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from taskonomy.errors import TaskonomyError

LOG_DIR = Path("logs") / "stages"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_command(stage, root: Path) -> int:
    """The stage's command(s) as DVC runs them (shell, its working directory, DVC_ROOT / DVC_STAGE)."""
    log = root / LOG_DIR / f"{stage.addressing.replace('/', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DVC_ROOT": str(root), "DVC_STAGE": stage.addressing}
    commands = stage.cmd if isinstance(stage.cmd, list) else [stage.cmd]
    with log.open("w") as out:
        for command in commands:
            code = subprocess.run(command, shell=True, cwd=stage.wdir, env=env, stdout=out,
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


def repro(jobs: int, root: Path | str = ".") -> int:
    """Bring every stage of the DVC project at ``root`` up to date, ``jobs`` stages at a time; 0 on
    success, 1 if a stage failed (the failure named on stderr, with its log)."""
    if jobs < 1:
        raise TaskonomyError(f"--jobs: {jobs}: run at least 1 stage at a time")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage.cache import RunCacheNotFoundError

    root = Path(root).resolve()
    try:
        repo = Repo(str(root))
    except DvcException as err:
        raise TaskonomyError(f"{root}: not a DVC project ({err})") from None
    graph = repo.index.graph                          # an edge goes from a stage to one it depends on
    stages = {s.addressing: s for s in graph.nodes if s.cmd}
    upstream = {name: {d.addressing for d in graph.successors(s) if d.addressing in stages}
                for name, s in stages.items()}
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
                    running[name] = pool.submit(_run_command, stage, root)
            if not running:
                if failed or done == set(stages):
                    break
                continue                              # stages found unchanged made others ready
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for name in [n for n, f in running.items() if f in finished]:
                code = running.pop(name).result()
                if code:
                    failed.append((name, code))
                    _say(f"{name}: failed (exit {code}); see {LOG_DIR / (name.replace('/', '_') + '.log')}")
                    continue
                with repo.lock:
                    _record(stages[name])
                done.add(name)
                ran.append(name)
                _say(f"{name}: done, recorded in dvc.lock")
    seconds = time.perf_counter() - t0
    if failed:
        names = ", ".join(f"'{n}' (exit {c})" for n, c in failed)
        print(f"error: stage {names} failed; the stages that finished are recorded in dvc.lock", file=sys.stderr)
        return 1
    _say(f"repro: {len(ran)} stages run, {len(stages) - len(ran)} up to date, {jobs} at a time, {seconds:.1f} s")
    return 0
