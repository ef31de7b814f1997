"""Benchmark of the renderer: fully labelled views per second at the default resolution and at 64x64.

    .venv/bin/python benchmarks/render.py [--params params.yaml] [--scenes 128] [--threads 2]

Renders the train split's first ``--scenes`` scenes (every label, shadows as in params, then without
shadows for comparison) after a warm-up, and prints a table; the last line is
``render: <N> images/s at 64x64 (all labels)``. The machine may be shared: the load average is printed
next to each timing, and variants are timed in the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from taskonomy.config import load_params
from taskonomy.render import render_split


def _time(r, scenes: int, repeats: int) -> float:
    """Best wall time of ``repeats`` renders of ``scenes`` scenes."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        render_split(r, "train", n_scenes=scenes)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--scenes", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_params(args.params).render
    variants = [
        (f"{base.resolution}x{base.resolution}", base, "default params, all labels"),
        ("64x64", dataclasses.replace(base, resolution=64, shadows=True), "all labels, shadows on"),
        ("64x64", dataclasses.replace(base, resolution=64, shadows=False), "all labels, no shadows"),
    ]
    render_split(dataclasses.replace(base, resolution=16), "train", n_scenes=4)        # warm-up
    print(f"threads {args.threads}, {args.scenes} scenes x {base.views_per_scene} views, "
          f"chunk {base.chunk_scenes} scenes, best of {args.repeats}")
    print(f"{'resolution':>10}  {'images/s':>9}  {'ms/image':>8}  {'load':>5}  notes")
    headline = None
    for name, r, notes in variants:
        seconds = _time(r, args.scenes, args.repeats)
        rate = args.scenes * r.views_per_scene / seconds
        print(f"{name:>10}  {rate:9.0f}  {1000 / rate:8.2f}  {os.getloadavg()[0]:5.2f}  {notes}")
        if name == "64x64" and r.shadows and headline is None:
            headline = rate
    print(f"render: {headline:.0f} images/s at 64x64 (all labels)")


if __name__ == "__main__":
    main()
