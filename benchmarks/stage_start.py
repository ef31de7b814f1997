"""Benchmark: what starting a stage costs, in its own process vs through the warm fork server.

    .venv/bin/python benchmarks/stage_start.py [--repeats 5]

Runs stage scripts the way DVC does (``python stages/<stage>.py ...``) with ``--help``, which imports
everything the stage imports and then exits: ``TASKONOMY_FORKSERVER=0`` (each run imports torch,
torchvision, matplotlib ... itself) against a warm server of the benchmark's own
(``taskonomy/forkserver.py``), interleaved over the repeats. It prints a table of the median wall time
per start, with the load average beside it (the machine may be shared), and the saving over a default
``dvc repro``, whose 54 torch stages after the first one can be served. The last line is
``stage start: <R>x faster through the fork server (<own> s -> <served> s per stage)``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from taskonomy import forkserver

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["train_task", "transfer", "transfer_high", "report"]
TORCH_STAGES = 54  # 26 train_task + 26 transfer + pixels + transfer_high (render, the first, starts the server)


def _start(stage: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--help"], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def _wait_ready(env: dict) -> None:
    """Start the benchmark's server and wait until it has preloaded (a served run returns fast)."""
    _start("report", env)  # no server yet: runs itself and starts one
    if not forkserver.wait_listening(forkserver.server_address(env), 120):
        raise SystemExit("stage_start: the benchmark's fork server did not start")
    _start("report", env)  # waits for the preload to finish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not forkserver.supported():
        raise SystemExit("stage_start: the fork server needs Linux")
    base = {k: v for k, v in os.environ.items() if k != forkserver.CHILD}
    own = {**base, forkserver.ENABLE: "0"}
    served = {**base, forkserver.ENABLE: f"benchmark-{os.getpid()}", forkserver.IDLE: "60"}
    _wait_ready(served)
    times: dict[tuple[str, str], list[float]] = {}
    loads: dict[str, list[float]] = {"own": [], "served": []}
    for _ in range(args.repeats):
        for stage in STAGES:
            for mode, env in (("own", own), ("served", served)):
                times.setdefault((stage, mode), []).append(_start(stage, env))
                loads[mode].append(os.getloadavg()[0])

    print(f"{'stage':<15}{'own process s':>15}{'fork server s':>15}{'ratio':>8}")
    for stage in STAGES:
        a, b = (statistics.median(times[stage, m]) for m in ("own", "served"))
        print(f"{stage:<15}{a:>15.2f}{b:>15.2f}{a / b:>7.1f}x")
    a = statistics.median(t for (s, m), ts in times.items() if m == "own" for t in ts)
    b = statistics.median(t for (s, m), ts in times.items() if m == "served" for t in ts)
    print(f"load average: own {statistics.mean(loads['own']):.2f}, served {statistics.mean(loads['served']):.2f}")
    print(f"saving over a default dvc repro ({TORCH_STAGES} torch stages): about {(a - b) * TORCH_STAGES:.0f} s")
    print(f"stage start: {a / b:.1f}x faster through the fork server ({a:.2f} s -> {b:.2f} s per stage)")


if __name__ == "__main__":
    main()
