"""Benchmark: peak memory of a task network's training (``train_task_network``: load the split, train,
evaluate, trivial baselines) at 128 px, for two bank sizes, so the growth per byte of bank shows.

    .venv/bin/python benchmarks/memory.py [--resolution 128] [--scenes 150 300] [--tasks segmentsemantic ...]
        [--code NAME=PATH ...]

Each (code, task, size) runs in a fresh process on a bank written to a temporary folder (tests/fake_bank:
every array of docs/bank-format.md, at the bank's own dtypes), read as the stages read it (memory-mapped);
the peak is that process's maximum resident set (VmHWM). ``--code NAME=PATH`` also runs another checkout of the
package (e.g. ``git worktree add /tmp/before <commit>``; ``this`` is this one), compared in the same run.

Printed: a table of peak RSS per (code, task, size) and the growth ratio (extra peak RSS per extra byte of
the train split's bank files); the last line is ``memory: <task>: growth <g>x the bank's bytes (<code>)``
for the first task and code. A loader that keeps only what the bank holds (uint8 images, compact labels)
grows at about 1x or less; a whole-split one-hot or float64 copy shows as several times that.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CHILD = r"""
import json, re, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__name__.lower()]   # PYTHONPATH's code
import torch, taskonomy
assert taskonomy.__file__.startswith(sys.argv[3]), taskonomy.__file__
from taskonomy.bank import load_splits
from taskonomy.config import TrainTaskParams
from taskonomy.nets.train import train_task_network
from taskonomy.tasks import get_task
torch.set_num_threads(2)
splits = load_splits(sys.argv[1], ("train", "test"))
cfg = TrainTaskParams(width=16, head_width=16, epochs=1, epoch_items=64, batch_size=32)
run = train_task_network(get_task(sys.argv[2]), splits["train"], splits["test"], cfg)
# VmHWM: this process's peak since exec (ru_maxrss would keep the forking parent's)
peak = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
print(json.dumps({"peak": peak, "loss": float(run.test_losses.mean())}))
"""


def bank_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.npy"))


def run_child(code: Path, bank: Path, task: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(bank), task, str(code)], capture_output=True, text=True, env=env,
                          timeout=3600, cwd=bank)                  # not a folder holding a package of its own
    if proc.returncode != 0:
        raise SystemExit(f"memory: {task} on {code} failed: {proc.stderr.strip().splitlines()[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--scenes", type=int, nargs=2, default=[500, 1000], help="train scenes of the two banks (x 4 views)")
    parser.add_argument("--tasks", nargs="+", default=["segmentsemantic", "rgb2sfnorm", "segment2d"])
    parser.add_argument("--code", nargs="*", default=[], help="NAME=PATH: another checkout to compare")
    args = parser.parse_args()
    from fake_bank import write_fake_bank

    codes = {"this": ROOT, **{c.split("=", 1)[0]: Path(c.split("=", 1)[1]) for c in args.code}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        banks = {}
        for n in args.scenes:
            folder = Path(tmp) / f"bank{n}"
            write_fake_bank(folder, {"train": n, "transfer": 2, "test": 10}, resolution=args.resolution)
            banks[n] = (folder, bank_bytes(folder / "train"))
        print(f"{'code':>8} {'task':>16} {'scenes':>6} {'bank MB':>8} {'peak MB':>8} {'growth':>7}")
        for name, code in codes.items():
            for task in args.tasks:
                peaks = {n: run_child(code, banks[n][0], task)["peak"] for n in args.scenes}
                small, big = args.scenes
                growth = (peaks[big] - peaks[small]) / (banks[big][1] - banks[small][1])
                rows.append((name, task, growth))
                for n in args.scenes:
                    print(f"{name:>8} {task:>16} {n:>6} {banks[n][1] / 1e6:>8.0f} {peaks[n] / 1e6:>8.0f} "
                          f"{growth if n == big else float('nan'):>7.2f}")
    for name, task, growth in rows:
        if name != "this":
            mine = next(g for c, t, g in rows if c == "this" and t == task)
            print(f"{task}: growth {mine:.2f}x with this code, {growth:.2f}x with {name} ({growth / mine:.1f}x more)")
    name, task, growth = rows[0]
    print(f"memory: {task}: growth {growth:.2f}x the bank's bytes ({name}, {args.resolution} px)")


if __name__ == "__main__":
    main()
