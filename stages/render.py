"""DVC stage ``render``: the task bank (every split, every label) and its sample sheet.

    python stages/render.py --params params.yaml --out data/bank --figures reports/figures

Reads the ``render`` section of the params file; writes ``<out>/{train,transfer,test}`` and
``<out>/manifest.json`` (docs/bank-format.md) and ``<figures>/bank_samples.png``. With ``render.source:
taskonomy`` the bank is read from a real Taskonomy download instead of rendered (docs/real-data.md); the
task list is then only checked against the domains found (every domain present is read, so the bank does
not depend on the list).
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import time

import torch

from taskonomy.bank import load_split
from taskonomy.bank.real import read_taskonomy_bank
from taskonomy.bank.render import render_bank
from taskonomy.bank.render.sheet import bank_sheet, views_sheet
from taskonomy.config import load_params
from taskonomy.stage import run_stage
from taskonomy.storage import ensure_writable

log = logging.getLogger("render")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/bank")
    parser.add_argument("--figures", default="reports/figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    params = load_params(args.params)
    r = params.render
    ensure_writable(args.out, args.figures)
    # The bytes do not depend on threads or workers. Parallelism comes from render.workers (forked
    # processes, one thread each); intra-op threads gain little here and collapse on a shared machine.
    torch.set_num_threads(1)
    start = time.perf_counter()
    if r.source == "taskonomy":
        read_taskonomy_bank(r, args.out, list(params.tasks), progress=True)
        log.info("read the bank from %s in %.1f s", r.taskonomy.root, time.perf_counter() - start)
        sheet = views_sheet(load_split(args.out, "train"), 2 * r.sample_scenes, f"{args.figures}/bank_samples.png")
    else:
        render_bank(r, args.out, progress=True)
        log.info("rendered the bank in %.1f s", time.perf_counter() - start)
        sheet = bank_sheet(load_split(args.out, "train"), r.sample_scenes, f"{args.figures}/bank_samples.png")
    log.info("wrote %s", sheet)
    return 0


if __name__ == "__main__":
    run_stage(main)
