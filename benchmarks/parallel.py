"""Benchmark: the default configuration's task networks (every ``train_task@<task>`` stage) brought up to
date serially by ``dvc repro`` and by ``taskonomy repro --jobs N``, same params, same losses.

    .venv/bin/python benchmarks/parallel.py [--jobs 2] [--from PATH] [--tasks rgb2depth,edge2d]

Each variant runs in its own fresh clone of this repository's HEAD with its own empty DVC cache (so
neither finds the other's runs in a run cache), after the rendered bank is copied in from ``--from`` (a
DVC project whose ``render`` stage is up to date for HEAD's lock, default this repository) and recorded
with ``dvc commit``. Serial: ``dvc repro train_task`` (or the listed tasks' stages); concurrent:
``taskonomy repro --jobs N`` on the same targets, stages keeping the threads their params give them
(``train_task.threads: 0``: every core, in each of the N stages at once; their OpenMP threads wait
passively); and ``--share-cores`` (``threads: 0`` = cores / N each: another thread count, so its losses
differ, and the table says by how much).

The table gives each variant's wall time and the ratio to serial, then whether each task's network,
per-item losses and headline metrics have the same hashes in both ``dvc.lock`` files. The last line is
``parallel: <S>x speedup of the task networks with <N> workers over serial dvc repro, same losses``
(``different losses`` if any hash differs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict, log: Path | None = None) -> float:
    start = time.perf_counter()
    out = log.open("w") if log else subprocess.DEVNULL
    try:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    finally:
        if log:
            out.close()
    if code:
        raise SystemExit(f"error: {' '.join(cmd)} failed in {cwd} (exit {code}){f'; see {log}' if log else ''}")
    return time.perf_counter() - start


def lock_outs(path: Path, stages: list[str]) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load(path.read_text())["stages"]
    return {s: {o["path"]: o.get("md5", "") for o in lock[s]["outs"]} for s in stages}


def prepare(work: Path, name: str, source: Path, env: dict) -> Path:
    clone = work / name
    run(["git", "clone", "-q", str(ROOT), str(clone)], work, env)
    run([str(BIN / "dvc"), "config", "--local", "cache.dir", str(work / f"cache-{name}")], clone, env)
    for path in ("data/bank", "outputs/params_checked.txt"):
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        if (source / path).is_dir():
            shutil.copytree(source / path, clone / path)
        else:
            shutil.copy2(source / path, clone / path)
    run([str(BIN / "dvc"), "commit", "-f", "-q", "check_params", "render"], clone, env)
    status = subprocess.run([str(BIN / "dvc"), "status", "check_params", "render"], cwd=clone, env=env,
                            capture_output=True, text=True).stdout
    if "changed" in status:
        raise SystemExit(f"error: --from {source}: its rendered bank is not the one HEAD's dvc.lock records; "
                         "run `dvc repro render` there first")
    return clone


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--from", dest="source", type=Path, default=ROOT)
    parser.add_argument("--tasks", help="comma-separated tasks (default: every task of params.yaml)")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    if not (source / "data/bank").is_dir():
        raise SystemExit(f"error: --from {source}: no data/bank; run `dvc repro render` there first")
    tasks = args.tasks.split(",") if args.tasks else yaml.safe_load((ROOT / "params.yaml").read_text())["tasks"]
    stages = [f"train_task@{t}" for t in tasks]
    targets = stages if args.tasks else ["train_task"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory(prefix="parallel-") as tmp:
        work = Path(tmp)
        serial, concurrent, shared = (prepare(work, name, source, env) for name in ("serial", "concurrent", "shared"))
        env_of = {clone: {**env, "PYTHONPATH": str(clone)} for clone in (serial, concurrent, shared)}  # each its own code
        print(f"{len(stages)} task networks; bank from {source}; {os.cpu_count()} cores", flush=True)
        t_serial = run([str(BIN / "dvc"), "repro", *targets], serial, env_of[serial], work / "serial.log")
        print(f"serial dvc repro: {t_serial:.1f} s", flush=True)
        t_conc = run([str(BIN / "python"), "-m", "taskonomy", "repro", "--jobs", str(args.jobs), *targets],
                     concurrent, env_of[concurrent], work / "concurrent.log")
        print(f"taskonomy repro --jobs {args.jobs}: {t_conc:.1f} s", flush=True)
        t_share = run([str(BIN / "python"), "-m", "taskonomy", "repro", "--jobs", str(args.jobs), "--share-cores",
                       *targets], shared, env_of[shared], work / "shared.log")
        print(f"taskonomy repro --jobs {args.jobs} --share-cores: {t_share:.1f} s", flush=True)
        loss = {clone: {t: json.loads((clone / "reports/metrics/networks" / f"{t}.json").read_text()).get("test_loss")
                        for t in tasks} for clone in (serial, shared)}
        rel = max((abs(loss[shared][t] - loss[serial][t]) / abs(loss[serial][t]) for t in tasks if loss[serial][t]),
                  default=0.0)
        a, b = lock_outs(serial / "dvc.lock", stages), lock_outs(concurrent / "dvc.lock", stages)
        same = [s for s in stages if a[s] == b[s]]
        for s in sorted(set(stages) - set(same)):
            print(f"{s}: differing outputs " + ", ".join(p for p in a[s] if a[s][p] != b[s].get(p)), flush=True)
        clean = "up to date" in subprocess.run([str(BIN / "dvc"), "status", *targets], cwd=concurrent, env=env,
                                               capture_output=True, text=True).stdout.lower()
    speedup = t_serial / t_conc
    print()
    print(f"| variant | wall s | ratio to serial |\n|---|---:|---:|\n| dvc repro (serial) | {t_serial:.1f} | 1.00 |\n"
          f"| taskonomy repro --jobs {args.jobs} | {t_conc:.1f} | {t_conc / t_serial:.2f} |\n"
          f"| taskonomy repro --jobs {args.jobs} --share-cores | {t_share:.1f} | {t_share / t_serial:.2f} |")
    print(f"\nstages whose network, per-item losses and metrics hash the same in both locks: {len(same)}/{len(stages)}"
          f"{'' if len(same) == len(stages) else ' (differ: ' + ', '.join(sorted(set(stages) - set(same))) + ')'}; "
          f"dvc status after the concurrent run: {'up to date' if clean else 'CHANGED'}")
    print(f"--share-cores ({max(1, os.cpu_count() // args.jobs)} thread(s) per network instead of all cores): test losses "
          f"within {rel:.1e} of serial (largest relative difference), {t_serial / t_share:.2f}x speedup")
    verdict = "same losses" if len(same) == len(stages) else "different losses"
    print(f"parallel: {speedup:.2f}x speedup of the task networks with {args.jobs} workers over serial dvc repro, {verdict}")


if __name__ == "__main__":
    main()
