"""DVC stage ``render_target``: the target domain's splits (issue 24) and their side-by-side figure.

    python stages/render_target.py --params params.yaml --out data/target --figures reports/adapt/domains.png

Reads the ``render`` section and ``adapt``'s shift, severity and scenes; writes
``<out>/{target_train,target_test}`` and ``<out>/manifest.json`` (docs/bank-format.md, "Target domain") and
the figure: a few test scenes in the source and the target domain, with the labels they share.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import logging
import time
from pathlib import Path

import torch

from taskonomy.bank import load_split
from taskonomy.bank.render import render_split, render_target_bank
from taskonomy.bank.render.domain import Domain
from taskonomy.bank.render.sheet import domain_sheet
from taskonomy.config import load_params
from taskonomy.errors import DataError
from taskonomy.stage import run_stage
from taskonomy.storage import ensure_writable

log = logging.getLogger("render_target")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/target")
    parser.add_argument("--figures", default="reports/adapt/domains.png", help="the figure's path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    p = load_params(args.params)
    r, domain = p.render, Domain.from_params(p.adapt)
    if r.source != "synthetic":
        raise DataError(f"{args.params}: render.source is {r.source}: the target domain is rendered from the "
                        f"synthetic rooms, so the adaptation stages need render.source: synthetic (with real data, "
                        f"run the taxonomy half: dvc repro taxonomy; docs/real-data.md)")
    ensure_writable(args.out, Path(args.figures).parent)
    torch.set_num_threads(1)      # as stage render: parallel in render.workers' processes, bytes the same
    start = time.perf_counter()
    render_target_bank(r, p.adapt, args.out, progress=True)
    log.info("rendered the target domain (%s) in %.1f s", domain, time.perf_counter() - start)
    # the source side of the figure: the first test scenes again (a scene does not depend on the others)
    shown = min(r.sample_scenes, r.scenes.test)
    source, _ = render_split(r, "test", n_scenes=shown)
    figure = domain_sheet(source, load_split(args.out, "target_test"), shown, r.views_per_scene,
                          f"target domain: {domain}", args.figures)
    log.info("wrote %s", figure)
    return 0


if __name__ == "__main__":
    run_stage(main)
