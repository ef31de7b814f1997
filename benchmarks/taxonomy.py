"""Benchmark: the taxonomy sweep (budgets 1..25 x max orders 1..5) on Taskonomy's published 16k
affinities, with PuLP/CBC, cross-checked by scipy.optimize.milp (HiGHS) on the same problems.

    .venv/bin/python benchmarks/taxonomy.py [--affinities PATH] [--formulation strong|official]

Prints the optimum per (budget, max order), where the PuLP time goes (building, writing the MPS
file and reading the solution in Python, vs. the CBC process), the load average (the machine is
shared, so timings are noisy), and as its last line
``taxonomy: <T> s for <N> solves (scipy/HiGHS: <T2> s), all equal``. Exit 1 if any optimum differs
by more than 1e-6.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from taskonomy.analysis.tables import load_published
from taskonomy.stage import run_main
from taskonomy.analysis.taxonomy import assign_roles, build_problem, solve_highs, sweep, to_arrays

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "taskonomy-2018" / "affinities" / "all_affinities_16k.pkl"
BUDGETS, ORDERS = list(range(1, 26)), [1, 2, 3, 4, 5]


class ProcessClock:
    """Adds up the wall time spent waiting for child processes (the CBC runs PuLP starts)."""

    def __init__(self):
        self.seconds, self.calls, self._wait = 0.0, 0, subprocess.Popen.wait

    def __enter__(self):
        clock, wait = self, self._wait

        def timed_wait(proc, *args, **kwargs):
            t0 = time.perf_counter()
            try:
                return wait(proc, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - t0
                clock.calls += 1

        subprocess.Popen.wait = timed_wait
        return self

    def __exit__(self, *exc):
        subprocess.Popen.wait = self._wait


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--affinities", type=Path, default=DEFAULT)
    ap.add_argument("--formulation", choices=("strong", "official"), default="strong")
    args = ap.parse_args(argv)

    transfers, _ = load_published(args.affinities)
    roles = assign_roles(transfers)
    load_before = os.getloadavg()

    sweep(transfers, roles, BUDGETS[:1], ORDERS[:1], formulation=args.formulation)  # warm caches
    t0 = time.perf_counter()
    results = sweep(transfers, roles, BUDGETS, ORDERS, formulation=args.formulation)
    t_pulp = time.perf_counter() - t0

    with ProcessClock() as clock:  # a second, instrumented sweep: how much of it is the CBC process
        t1 = time.perf_counter()
        sweep(transfers, roles, BUDGETS, ORDERS, formulation=args.formulation)
        t_instrumented = time.perf_counter() - t1

    t_build = time.perf_counter()
    problems = {k: build_problem(transfers, roles, budget=max(BUDGETS), max_order=k) for k in ORDERS}
    t_build = time.perf_counter() - t_build

    t2 = time.perf_counter()
    highs = {}
    for k in ORDERS:
        arrays = to_arrays(problems[k], args.formulation)
        for b in BUDGETS:
            highs[(k, b)] = solve_highs(replace(problems[k], budget=float(b)), arrays)
    t_highs = time.perf_counter() - t2
    load_after = os.getloadavg()

    pulp = {(r.max_order, int(r.budget)): r for r in results}
    differ = [(k, b) for k in ORDERS for b in BUDGETS
              if not (pulp[(k, b)].optimal and highs[(k, b)].optimal
                      and abs(pulp[(k, b)].objective - highs[(k, b)].objective) <= 1e-6)]

    print(f"published affinities: {args.affinities.name}, {len(roles.targets)} targets, "
          f"{len(roles.source_only)} source-only; edges per max order: "
          + ", ".join(f"k{k}={len(problems[k].edges)}" for k in ORDERS))
    print(f"objective (sum of sqrt affinities, formulation {args.formulation}) by budget and max order:")
    print("budget " + "".join(f"{'k=' + str(k):>10}" for k in ORDERS) + "   supervised at k=5")
    for b in BUDGETS:
        row = "".join(f"{pulp[(k, b)].objective:>10.5f}" for k in ORDERS)
        print(f"{b:>6} {row}   {', '.join(pulp[(5, b)].supervised)}")
    n = len(results)
    print(f"PuLP/CBC: {t_pulp:.2f} s ({1000 * t_pulp / n:.1f} ms per solve); instrumented rerun "
          f"{t_instrumented:.2f} s, of which {clock.seconds:.2f} s waiting for {clock.calls} CBC processes "
          f"({1000 * clock.seconds / max(clock.calls, 1):.1f} ms each) and {t_instrumented - clock.seconds:.2f} s "
          f"in Python (building the model, writing MPS, reading the solution)")
    print(f"building the 5 problems (viable edges, coefficients): {1000 * t_build:.0f} ms")
    print(f"scipy/HiGHS: {t_highs:.2f} s; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    for k, b in differ:
        print(f"DIFFER: budget {b}, max order {k}: CBC {pulp[(k, b)].status} {pulp[(k, b)].objective!r}, "
              f"HiGHS {highs[(k, b)].status} {highs[(k, b)].objective!r}")
    verdict = "all equal" if not differ else f"{len(differ)} differ"
    print(f"taxonomy: {t_pulp:.2f} s for {n} solves (scipy/HiGHS: {t_highs:.2f} s), {verdict}")
    return 1 if differ else 0


if __name__ == "__main__":
    run_main(main)
