"""Benchmark: what starting a stage costs, and the floor that no change of ours removes.

    .venv/bin/python benchmarks/stage_start.py [--repeats 5]

Runs stage scripts the way DVC does (``python stages/<stage>.py ...``) with ``--help``, which imports
everything the stage imports at module level and exits, next to the floor of a torch stage: a bare
``python``, ``import torch``, and ``import torch`` with one optimiser step (which imports
``torch._dynamo``, as every training stage does), interleaved over the repeats. It prints a table of
the median wall time per start, the load average (the machine may be shared) and what the starts of a
default ``dvc repro`` (54 torch stages) cost in all.

The fork server that served the stages from one warm process until this benchmark's previous version
(3.68 s -> 0.25 s per torch stage, about 185 s of a default run) is gone: see the README.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["train_task", "transfer", "transfer_high", "report"]
TORCH_STAGES = 54  # 26 train_task + 26 transfer + pixels + transfer_high
FLOOR = {
    "python": "pass",
    "import torch": "import torch",
    "torch + optimiser step": "import torch\nm = torch.nn.Linear(2, 2)\no = torch.optim.AdamW(m.parameters())\n"
                              "m(torch.ones(1, 2)).sum().backward()\no.step()",
}


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    runs = {f"stage {s}": [sys.executable, str(ROOT / "stages" / f"{s}.py"), "--help"] for s in STAGES}
    runs |= {name: [sys.executable, "-c", code] for name, code in FLOOR.items()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    loads = []
    for _ in range(args.repeats):
        for name, cmd in runs.items():
            times[name].append(_time(cmd))
            loads.append(os.getloadavg()[0])
    print(f"{'start':<26}{'median s':>10}")
    for name in runs:
        print(f"{name:<26}{statistics.median(times[name]):>10.2f}")
    torch_stage = statistics.median(times["stage train_task"] + times["stage transfer"] + times["stage transfer_high"])
    print(f"load average {statistics.mean(loads):.2f}; a default dvc repro's {TORCH_STAGES} torch stages start "
          f"in about {torch_stage * TORCH_STAGES:.0f} s ({torch_stage:.2f} s each)")


if __name__ == "__main__":
    main()
