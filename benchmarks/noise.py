"""Benchmark of the affinities' noise over readout seeds, and of what averaging readouts over seeds buys
(issue 25, items 1 and 3): every first-order readout retrained from a finished run's cached
representations at several ``transfer.seed`` values, nothing else changed.

    .venv/bin/python benchmarks/noise.py [RUN] [--seeds 0,1,2,3,4,5] [--targets a,b] [--sources a,b]
        [--groups 1,3] [--rounds 100] [--variant 'batch_size=16'] [--save FILE.npz] [--load FILE.npz]
    .venv/bin/python benchmarks/noise.py --runs RUN_A RUN_B [...]      # whole pipelines at other seeds

``RUN`` is a repository after ``dvc repro`` (default: this one): its ``params.yaml``, ``data/bank`` and the
representations each ``transfer`` stage cached (``outputs/transfer/<source>/reps.npz``). The task networks
are the run's own: this measures the readouts' share of a seed's noise (a lower bound of the whole
pipeline's). By default every target and every source of the run, with the run's ``transfer`` params;
``--variant`` overrides some of them (``key=value,...``, checked as ``benchmarks/readouts.py`` does), so
two settings' noise compares at the same task networks.

``--runs`` compares whole pipelines instead, each a finished run at its own seeds (``train_task.seed``,
``transfer.seed``; the same bank): each run's first-order losses (``outputs/transfer/<source>/losses.npz``,
the mean over its ``transfer.seeds`` readouts) stand for one seed, and nothing is retrained.

Printed, with scipy.stats' ``kendalltau`` for the rank agreement:

- per target: the mean over sources of the affinity's standard deviation over seeds (and relative to the
  mean affinity), the mean Kendall tau of the source rankings between pairs of seeds, and the same tau
  between two test-image bootstrap resamples of one seed (the noise the report's old pass shares measured);
- per known-structure check (taskonomy.analysis.checks): its pass rate over the seeds;
- per group size ``g`` of ``--groups``: the seeds split into disjoint groups of ``g`` whose per-item losses
  are averaged (what ``transfer.seeds: g`` does), then the same tau between groups and the checks' pass
  rate over groups, with the readouts' cost (``g`` times one seed's).

The last line is ``noise: tau <single> -> <averaged> (g=<g>), checks passing in every seed: <n>/<m>``.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from taskonomy.analysis.affinity import first_order_matrices
from taskonomy.analysis.checks import NA, PASS, check_structure, ranked_sources
from taskonomy.bank import load_splits
from taskonomy.config import check_tasks, load_params
from taskonomy.errors import TaskonomyError
from taskonomy.losses import first_order_losses
from taskonomy.nets.train import resolve_device
from taskonomy.stage import run_main
from taskonomy.transfer.engine import (TransferContext, executor_spec, load_reps, load_targets, run_transfers,
                                       strip_views)

from readouts import variant   # benchmarks/readouts.py, beside this script


def retrain(run: Path, seeds: list[int], targets: list[str], sources: list[str],
            overrides: str = "") -> dict[int, dict]:
    """seed -> target -> source -> (N_t,) per-item test losses of the retrained first-order readouts,
    with the run's ``transfer`` params under ``overrides`` (``key=value,...``)."""
    params = load_params(run / "params.yaml")
    params = dataclasses.replace(params, transfer=variant(params.transfer, overrides))
    reps = {s: load_reps(run / f"outputs/transfer/{s}/reps.npz", s) for s in sources}
    data = strip_views(load_targets(load_splits(run / "data/bank"), targets, params.transfer.images,
                                    params.target_only()))
    device = str(resolve_device(params.transfer.device))
    jobs = [((s,), t) for t in targets for s in sources if s in params.sources() or s == t]
    out = {}
    for seed in seeds:
        p = dataclasses.replace(params.transfer, seed=seed)
        start = time.perf_counter()
        out[seed] = run_transfers(TransferContext(reps, data, p, params.train_task, device), jobs,
                                  executor_spec(p, device))
        print(f"seed {seed}: {len(jobs)} readouts in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def save(path: Path, losses: dict[int, dict]) -> None:
    np.savez_compressed(path, **{f"{seed}/{t}/{s}": v for seed, per in losses.items()
                                 for t, row in per.items() for s, v in row.items()})


def load(path: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    with np.load(path) as z:
        for key in z.files:
            seed, t, s = key.split("/")
            out.setdefault(int(seed), {}).setdefault(t, {})[s] = z[key]
    return out


def averaged(losses: dict[int, dict], group: tuple[int, ...]) -> dict:
    """Per-item losses averaged over the seeds of ``group`` (what ``transfer.seeds`` does)."""
    first = losses[group[0]]
    return {t: {s: np.mean([losses[g][t][s] for g in group], axis=0) for s in row} for t, row in first.items()}


def mean_tau(matrices: list, target: str) -> float:
    """Mean Kendall tau (scipy.stats.kendalltau, tau-b) of ``target``'s source affinities between every pair."""
    taus = []
    for a, b in itertools.combinations(matrices, 2):
        col_a, col_b = a[target].drop(target, errors="ignore"), b[target].drop(target, errors="ignore")
        taus.append(stats.kendalltau(col_a.values, col_b[col_a.index].values).statistic)
    return float(np.mean(taus)) if taus else float("nan")


def pass_rates(matrices: list) -> dict[str, float]:
    counts: dict[str, list[bool]] = {}
    for a in matrices:
        for r in check_structure(a):
            if r.status != NA:
                counts.setdefault(r.name, []).append(r.status == PASS)
    return {name: float(np.mean(v)) for name, v in counts.items()}


def bootstrap_matrices(losses: dict, clip: float, rounds: int, seed: int) -> list:
    """First-order affinities on test-image resamples of one seed's losses (one draw per target)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        resampled = {}
        for t, row in losses.items():
            items = rng.integers(0, len(next(iter(row.values()))), len(next(iter(row.values()))))
            resampled[t] = {s: v[items] for s, v in row.items()}
        out.append(first_order_matrices(resampled, clip)[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default=".", type=Path)
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--targets", default="", help="comma-separated; default: every target of the run")
    parser.add_argument("--sources", default="", help="comma-separated; default: every source of the run")
    parser.add_argument("--groups", default="1,3", help="group sizes of seeds averaged together")
    parser.add_argument("--rounds", type=int, default=20, help="test-image bootstrap resamples of seed 0")
    parser.add_argument("--variant", default="", help="key=value,... over the run's transfer params")
    parser.add_argument("--save", type=Path, help="write the retrained losses here (npz)")
    parser.add_argument("--load", type=Path, action="append", default=[],
                        help="read losses saved by --save instead of retraining (repeat: seeds of several runs)")
    parser.add_argument("--runs", type=Path, nargs="+", default=[],
                        help="finished runs at other seeds: their first-order losses, one seed each")
    args = parser.parse_args()
    params = load_params(args.run / "params.yaml")
    clip = params.affinity.clip
    if args.runs:
        losses = {}
        for i, run in enumerate(args.runs):
            p = load_params(run / "params.yaml")
            losses[i] = first_order_losses(run / "outputs/transfer", p.sources(), p.targets())
            print(f"run {i}: {run} (train_task.seed {p.train_task.seed}, transfer.seed {p.transfer.seed}, "
                  f"{p.transfer.seeds} readout seeds averaged)")
    elif args.load:
        losses = {}
        for i, path in enumerate(args.load):   # several runs: their seeds renumbered run by run
            for seed, per in load(path).items():
                losses[len(losses) if len(args.load) > 1 else seed] = per
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        targets = args.targets.split(",") if args.targets else params.targets()
        sources = args.sources.split(",") if args.sources else list(params.tasks)
        check_tasks(params, targets + sources, args.run / "params.yaml")
        losses = retrain(args.run, seeds, targets, sources, args.variant)
        if args.save:
            save(args.save, losses)
    seeds = sorted(losses)
    if len(seeds) < 2:
        raise TaskonomyError(f"--seeds: {len(seeds)} seed; the noise over seeds needs at least 2")
    matrices = [first_order_matrices(losses[s], clip)[1] for s in seeds]
    boot = bootstrap_matrices(losses[seeds[0]], clip, args.rounds, 0)
    targets = list(matrices[0].columns)

    what = "runs" if args.runs else "readout seeds"
    print(f"\n{len(seeds)} {what}, {len(targets)} targets, {len(matrices[0].index)} sources")
    print(f"{'target':>18}  {'sd(aff)':>8}  {'sd/mean':>7}  {'tau seeds':>9}  {'tau boot':>8}  best source per seed")
    stack = np.stack([m.values for m in matrices])                 # (S, sources, targets)
    sd, mean = np.nanstd(stack, axis=0, ddof=1), np.nanmean(stack, axis=0)
    taus, taus_boot = {}, {}
    for j, t in enumerate(targets):
        taus[t], taus_boot[t] = mean_tau(matrices, t), mean_tau(boot[:2 * (len(boot) // 2)], t)
        best = [ranked_sources(m, t)[0] for m in matrices]
        print(f"{t:>18}  {np.nanmean(sd[:, j]):8.4f}  {np.nanmean(sd[:, j] / mean[:, j]):7.2f}  {taus[t]:9.2f}  "
              f"{taus_boot[t]:8.2f}  {', '.join(best)}")
    print(f"{'median':>18}  {np.nanmedian(sd):8.4f}  {np.nanmedian(sd / mean):7.2f}  "
          f"{np.median(list(taus.values())):9.2f}  {np.median(list(taus_boot.values())):8.2f}")

    single = pass_rates(matrices)
    print("\nchecks: pass rate over seeds (single readouts), then over groups of averaged seeds")
    groups = [int(g) for g in args.groups.split(",")]
    by_group = {}
    for g in groups:
        parts = [tuple(seeds[i:i + g]) for i in range(0, len(seeds) - g + 1, g)]
        if len(parts) < 2:
            print(f"  g={g}: fewer than two disjoint groups of {len(seeds)} seeds; skipped")
            continue
        mats = [first_order_matrices(averaged(losses, p), clip)[1] for p in parts]
        by_group[g] = (pass_rates(mats), float(np.median([mean_tau(mats, t) for t in targets])), len(parts))
    header = "".join(f"  g={g} ({n} groups)" for g, (_, _, n) in by_group.items())
    print(f"{'check':>18}  {'seeds':>5}{header}")
    for name, rate in single.items():
        print(f"{name:>18}  {rate:5.2f}" + "".join(f"  {r[name]:{len(f'  g={g} ({n} groups)') - 2}.2f}"
                                               for g, (r, _, n) in by_group.items()))
    print(f"{'median tau':>18}  {np.median(list(taus.values())):5.2f}"
          + "".join(f"  {tau:{len(f'  g={g} ({n} groups)') - 2}.2f}" for g, (_, tau, n) in by_group.items()))
    firm = sum(rate == 1.0 for rate in single.values())
    g, (_, tau, _) = max(by_group.items()) if by_group else (1, (None, float(np.median(list(taus.values()))), 0))
    print(f"noise: tau {np.median(list(taus.values())):.2f} -> {tau:.2f} (g={g}), "
          f"checks passing in every seed: {firm}/{len(single)}")
    sys.stdout.flush()


if __name__ == "__main__":
    run_main(main)
