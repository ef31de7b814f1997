"""Benchmark: a task network's training step under OpenMP's wait policies and thread counts, on a
quiet machine and next to a busy process.

    .venv/bin/python benchmarks/threads.py [--steps 60] [--repeats 2] [--task rgb2depth]

Each variant runs in a fresh process (the wait policy is read when torch's OpenMP library loads): the
default network of ``params.yaml`` for ``--task`` (32 x 32 inputs, batch ``train_task.batch_size``,
AdamW), timed over ``--steps`` steps after 5 warm-up steps, on random inputs. Variants: all cores
with libgomp's default wait (threads spin a while before sleeping), all cores with
``OMP_WAIT_POLICY=PASSIVE`` (sleep at once), one thread. Each is timed quiet and with a pure-Python
busy loop running beside it (another job holding one core), interleaved over the repeats. The table
gives the median ms per step and the ratio to the default quiet; the last line is
``threads: PASSIVE <R>x the default's step time quiet, <L>x with a busy core; one thread <Q>x / <B>x``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = os.cpu_count() or 1
VARIANTS = {"default wait": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "one thread": {"OMP_NUM_THREADS": "1"}}

STEP = """
import sys, time, torch
from taskonomy.config import load_params
from taskonomy.nets.models import build_task_network
from taskonomy.tasks import get_task
params, task, steps = load_params(sys.argv[1]), get_task(sys.argv[2]), int(sys.argv[3])
cfg, res = params.train_task, params.render.resolution
task = task if task.out_channels > 0 else task.with_outputs(2)  # the bank fixes the rest
torch.manual_seed(0)
net = build_task_network(task, cfg, res)
if cfg.channels_last:
    net = net.to(memory_format=torch.channels_last)
x = torch.randn(cfg.batch_size, task.n_views, 3, res, res)
opt = torch.optim.AdamW(net.parameters(), cfg.lr)
def step():
    opt.zero_grad(set_to_none=True)
    net(x).float().square().mean().backward()
    opt.step()
for _ in range(5):
    step()
t = time.perf_counter()
for _ in range(steps):
    step()
print(1000 * (time.perf_counter() - t) / steps)
"""


def _step_ms(env: dict, task: str, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", STEP, str(ROOT / "params.yaml"), task, str(steps)], env=env,
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--task", default="rgb2depth")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    times: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.repeats):
        for busy in (False, True):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                for name, extra in VARIANTS.items():
                    times.setdefault((name, busy), []).append(_step_ms({**base, **extra}, args.task, args.steps))
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
    med = {key: statistics.median(ts) for key, ts in times.items()}
    ref = med["default wait", False]
    print(f"{args.task}: training step, {CORES} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"{'variant':<26}{'quiet ms':>10}{'ratio':>8}{'busy core ms':>14}{'ratio':>8}")
    for name in VARIANTS:
        q, b = med[name, False], med[name, True]
        print(f"{name:<26}{q:>10.1f}{q / ref:>7.2f}x{b:>14.1f}{b / ref:>7.2f}x")
    r = {name: (med[name, False] / med["default wait", False], med[name, True] / med["default wait", True])
         for name in VARIANTS}
    print(f"threads: PASSIVE {r['OMP_WAIT_POLICY=PASSIVE'][0]:.2f}x the default's step time quiet, "
          f"{r['OMP_WAIT_POLICY=PASSIVE'][1]:.2f}x with a busy core; "
          f"one thread {r['one thread'][0]:.2f}x / {r['one thread'][1]:.2f}x")


if __name__ == "__main__":
    main()
