"""Benchmark of the renderer: fully labelled views per second at 64x64 and at the default resolution.

    .venv/bin/python benchmarks/render.py [--params params.yaml] [--scenes 128] [--repeats 3]

Renders the train split's first ``--scenes`` scenes (every label) after a warm-up and prints a table:
64x64 with shadows in one process with 1 and 2 threads, in 2 forked processes of one thread each, and as
the render stage runs it (the params' ``workers``, by default the cores the load leaves free, one thread
each), then the stage without shadows and at the default params. The last line is
``render: <N> images/s at 64x64 (all labels)`` for the stage's configuration, shadows on.

The machine may be shared: the load average is printed next to each timing, variants are timed in the
same run, interleaved over the repeats, and in-process variants also report CPU time per image
(``cpu ms``), which other processes on the machine disturb much less than wall time.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from taskonomy.config import load_params
from taskonomy.bank.render import render_split
from taskonomy.bank.render.split import render_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scenes", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = load_params(args.params).render
    # the stage decides its workers once, before rendering (0: the cores the load leaves free)
    workers = render_workers(base.workers)
    stage = dataclasses.replace(base, resolution=64, shadows=True, workers=workers)
    res = f"{base.resolution}x{base.resolution}"
    # (name, params, intra-op threads, notes); workers > 1 run one thread each
    variants = [
        ("64x64", dataclasses.replace(stage, workers=1), 1, "1 process, 1 thread"),
        ("64x64", dataclasses.replace(stage, workers=1), 2, "1 process, 2 threads"),
        ("64x64", dataclasses.replace(stage, workers=2), 1, "2 processes x 1 thread"),
        ("64x64", stage, 1, f"the stage: workers={base.workers} -> {workers} processes x 1 thread"),
        ("64x64", dataclasses.replace(stage, shadows=False), 1, "the stage, no shadows"),
        (res, dataclasses.replace(base, workers=workers), 1, "the stage at the default params"),
    ]
    torch.set_num_threads(1)
    render_split(dataclasses.replace(base, resolution=16, workers=1), "train", n_scenes=4)        # warm-up
    best = [float("inf")] * len(variants)
    cpu = [float("inf")] * len(variants)
    load = [0.0] * len(variants)
    for _ in range(args.repeats):
        for i, (_, r, threads, _) in enumerate(variants):
            torch.set_num_threads(threads)
            start, start_cpu = time.perf_counter(), time.process_time()
            render_split(r, "train", n_scenes=args.scenes)
            best[i] = min(best[i], time.perf_counter() - start)
            cpu[i] = min(cpu[i], time.process_time() - start_cpu)
            load[i] = max(load[i], os.getloadavg()[0])
    print(f"{args.scenes} scenes x {base.views_per_scene} views, chunk <= {base.chunk_scenes} scenes, "
          f"best of {args.repeats}, {os.cpu_count()} cores; load = highest 1-min load average seen")
    print(f"{'resolution':>10}  {'images/s':>9}  {'ms/image':>8}  {'cpu ms':>6}  {'load':>5}  notes")
    for (name, r, _, notes), seconds, used, seen in zip(variants, best, cpu, load):
        n = args.scenes * r.views_per_scene
        cpu_ms = f"{1000 * used / n:6.2f}" if r.workers == 1 else f"{'-':>6}"
        print(f"{name:>10}  {n / seconds:9.0f}  {1000 * seconds / n:8.2f}  {cpu_ms}  {seen:5.2f}  {notes}")
    headline = args.scenes * stage.views_per_scene / best[3]
    print(f"render: {headline:.0f} images/s at 64x64 (all labels)")


if __name__ == "__main__":
    main()
