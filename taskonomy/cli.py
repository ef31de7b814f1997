"""The ``taskonomy`` command (also ``python -m taskonomy``).

Subcommands:
  check-params [PATH]   validate a params file and print its sections (--stamp FILE: the pipeline's
                        first stage, check_params, which every other stage runs after; --profile NAME:
                        with a profile of configs/ on top)
  profile NAME          a profile of configs/ (gpu-128, gpu-256): list it, --apply it to params.yaml,
                        or print its `dvc exp run` arguments (--set-args)
  repro [STAGES] --jobs N [--ray ADDRESS]
                        bring the pipeline up to date, N ready stages at a time, here or on a Ray
                        cluster (DVC still the record)
  solve ...             solve a taxonomy (BIP) on an affinity table or Taskonomy's published pickle
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from taskonomy import __version__
from taskonomy.errors import TaskonomyError
from taskonomy.stage import fail, run_main
from taskonomy.storage import atomic_write_json


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (``error: ...``, exit 2), like every other error."""

    def error(self, message: str):
        fail(f"{self.prog}: {message} (see --help)")


def _check_params(args: argparse.Namespace) -> int:
    from taskonomy.config import as_dict, disk_warnings, load_params, time_warnings

    overlay = None
    if args.profile is not None:
        from taskonomy.profiles import load_profile

        overlay = load_profile(args.profile)
    params = load_params(args.path, overlay)
    for line in time_warnings(params) + disk_warnings(params, Path(args.path).resolve().parent):
        # runs, but longer than the CPU default is meant to take, or with the bank twice on disk
        print(f"{args.path}: warning: {line}", file=sys.stderr)
    if params.render.source == "taskonomy":
        # a listing, no decoding: a listed task whose domain is not downloaded stops the run here
        from taskonomy.bank.real import check_tasks_present

        check_tasks_present(params.render, list(params.tasks))
    for name, encoder in params.encoders.items():       # the user's weight files: present (read by encoder@)
        if not Path(encoder.path).is_file():
            from taskonomy.errors import DataError

            raise DataError(f"{encoder.path}: no such weight file (encoders.{name}.path)")
    if args.stamp is not None:
        # the same bytes for every valid params file, so the stages after it rerun only for their own
        # params (DVC compares their dependencies' hashes), while a bad value stops the run here
        from taskonomy.storage import atomic_write_text

        atomic_write_text(args.stamp, f"{args.path}: passed taskonomy check-params\n")
        return 0
    print(json.dumps(as_dict(params), indent=1))
    print(f"{args.path}: ok ({len(params.tasks)} tasks, {len(params.targets())} targets)")
    return 0


def _profile(args: argparse.Namespace) -> int:
    import shlex

    from taskonomy.config import load_params
    from taskonomy.profiles import apply_profile, leaves, load_profile, set_args

    overlay = load_profile(args.name)
    load_params(args.params, overlay)           # the merge must be valid before anything is written or run
    if args.set_args:
        print(" ".join(shlex.quote(a) for a in set_args(overlay)))
        return 0
    if args.apply:
        changed = apply_profile(args.params, overlay)
        print(f"{args.params}: {len(changed)} params set from profile {args.name}"
              + (f" ({', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''})" if changed else ""))
        return 0
    for key, value in leaves(overlay):
        print(f"{key}: {value}")
    return 0


def _names(text: str) -> list[str]:
    """``a,b,c`` -> ['a', 'b', 'c'] (empty items dropped)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _task_numbers(pairs: list[str] | None, flag: str) -> dict[str, float]:
    """``['t=1.5', ...]`` -> {'t': 1.5}; a malformed pair or a task given twice names the flag."""
    out: dict[str, float] = {}
    for pair in pairs or []:
        task, sep, value = pair.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not task or not math.isfinite(number):
            raise TaskonomyError(f"{flag} {pair!r}: expected TASK=NUMBER")
        task = task.strip()
        if task in out:
            raise TaskonomyError(f"{flag}: task '{task}' given twice ({out[task]:g} and {number:g})")
        out[task] = number
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _solve(args: argparse.Namespace) -> int:
    from taskonomy.analysis.tables import load_transfers
    from taskonomy.analysis.taxonomy import assign_roles, build_problem, require_optimal, solve

    need = None if args.objective == "affinity" else args.objective
    transfers, notes = load_transfers(args.affinities, args.quality, args.gain, need=need)
    roles = assign_roles(transfers, source_only=args.source_only, target_only=args.target_only,
                         unused=args.unused)
    problem = build_problem(transfers, roles, budget=args.budget, max_order=args.max_order,
                            costs=_task_numbers(args.cost, "--cost"), values=_task_numbers(args.value, "--value"),
                            transfer_costs=_task_numbers(args.transfer_cost, "--transfer-cost"),
                            objective=args.objective, sqrt=args.sqrt)
    result = require_optimal(solve(problem, formulation=args.formulation), problem)

    print(f"taxonomy of {args.affinities}: budget {problem.budget:g}, max order {problem.max_order}, "
          f"objective {problem.objective}{' (sqrt)' if problem.sqrt else ''}: {result.status}")
    print(f"  tasks: {len(roles.targets)} targets, {len(roles.source_only)} source-only, "
          f"{len(roles.target_only)} target-only, {len(roles.unused)} unused; {len(problem.edges)} usable transfers")
    print(f"  objective {result.objective:.6f}, supervision cost {result.cost:g} of {problem.budget:g}")
    print(f"  supervised ({len(result.supervised)}): {', '.join(result.supervised) or 'none'}")
    width = max((len(t) for t in result.transfers), default=0)
    for target, sources in result.transfers.items():
        c = result.choices[target]
        print(f"    {target:<{width}} <- {' + '.join(sources):<40} affinity {_fmt(c.affinity, 4)}  "
              f"quality {_fmt(c.quality)}  gain {_fmt(c.gain)}")
    print(f"  mean over the {len(result.transfers)} transferred targets: quality {_fmt(result.mean('quality'))}, "
          f"gain {_fmt(result.mean('gain'))}")
    for note in notes:
        print(f"  note: {note}")
    if args.out:
        out = {"affinities": str(args.affinities), **result.to_dict(),
               "roles": {"targets": list(roles.targets), "source_only": list(roles.source_only),
                         "target_only": list(roles.target_only), "unused": list(roles.unused)}}
        try:
            atomic_write_json(args.out, out)
        except OSError as err:
            raise TaskonomyError(f"--out {args.out}: cannot write ({err.strerror})") from None
        print(f"wrote {args.out}")
    return 0


def _add_solve(sub) -> None:
    p = sub.add_parser(
        "solve", help="solve a taxonomy (BIP) on an affinity table or a published Taskonomy pickle",
        description="Choose which tasks to supervise under a budget and which transfer serves every other "
                    "target (Taskonomy's BIP, official solver semantics). Defaults as the official solver: "
                    "budget 6, max order 5, cost 1, value 1.")
    p.add_argument("--affinities", type=Path, required=True, metavar="PATH",
                   help="reports/affinities.csv, or Taskonomy's all_affinities*.pkl")
    p.add_argument("--budget", type=float, default=6.0, help="supervision budget γ (default 6)")
    p.add_argument("--max-order", type=int, default=5, help="largest number of sources of a transfer (default 5)")
    for flag, what in (("--source-only", "never solved, may be supervised as sources"),
                       ("--target-only", "solved by transfer only, never supervised nor a source"),
                       ("--unused", "left out")):
        p.add_argument(flag, type=_names, action="extend", default=[], metavar="T,...", help=f"tasks {what}")
    p.add_argument("--cost", nargs="+", action="extend", metavar="T=C", help="supervision cost of task T (default 1)")
    p.add_argument("--value", nargs="+", action="extend", metavar="T=V", help="relative value of target T (default 1)")
    p.add_argument("--transfer-cost", nargs="+", action="extend", metavar="T=C",
                   help="cost of a transfer into T, counted in the budget (default 0)")
    p.add_argument("--objective", choices=("affinity", "quality", "gain"), default="affinity")
    p.add_argument("--sqrt", action=argparse.BooleanOptionalAction, default=True,
                   help="use the square root of the scores as the official solver did (default: on)")
    p.add_argument("--quality", type=Path, metavar="PATH", help="wins_vs_task*.pkl for a published pickle")
    p.add_argument("--gain", type=Path, metavar="PATH", help="wins_vs_pixels*.pkl for a published pickle")
    p.add_argument("--formulation", choices=("strong", "official"), default="strong",
                   help="rows of constraint (I); same optimum, 'strong' solves faster (default)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the taxonomy as JSON")
    p.set_defaults(func=_solve)


def _repro(args: argparse.Namespace) -> int:
    from taskonomy.runner import repro

    if args.ray is None and (args.cpus_per_stage != 1.0 or args.gpus_per_stage != 0.0):
        raise TaskonomyError("--cpus-per-stage / --gpus-per-stage: they apply to --ray; here each stage gets one GPU "
                             "when there are GPUs, and the threads its params give it")
    for flag, value in (("--cpus-per-stage", args.cpus_per_stage), ("--gpus-per-stage", args.gpus_per_stage)):
        if value < 0 or value != value:
            raise TaskonomyError(f"{flag}: {value}: must be a number >= 0")
    if args.ray is not None and args.share_cores:
        raise TaskonomyError("--share-cores: on Ray each stage is given the CPUs it asks for (--cpus-per-stage)")
    return repro(args.jobs, targets=args.targets, ray_address=args.ray, cpus_per_stage=args.cpus_per_stage,
                 gpus_per_stage=args.gpus_per_stage, share_cores=args.share_cores)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskonomy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"taskonomy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-params", help="validate a params file")
    p.add_argument("path", nargs="?", default="params.yaml")
    p.add_argument("--stamp", type=Path, help="write a fixed line here instead of printing the params (dvc.yaml's check_params)")
    p.add_argument("--profile", help="check PATH with this profile on top (a name of configs/, e.g. gpu-128, or a file)")
    p.set_defaults(func=_check_params)

    p = sub.add_parser("profile", help="switch params.yaml to a profile of configs/ (e.g. gpu-128)")
    p.add_argument("name", help="a name of configs/ (gpu-128, gpu-256) or a profile file")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file (default params.yaml)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--apply", action="store_true", help="write the profile into the params file, comments kept")
    how.add_argument("--set-args", action="store_true", help="print `dvc exp run` arguments instead (-S key=value ...)")
    p.set_defaults(func=_profile)
    p = sub.add_parser("repro", help="dvc repro, N ready stages at a time (taskonomy.runner)")
    p.add_argument("targets", nargs="*", help="stages or foreach groups (default: every stage), with what they depend on")
    p.add_argument("--jobs", "-j", type=int, default=2, help="stages at a time (default 2)")
    p.add_argument("--ray", metavar="ADDRESS", help="run each stage as a task on this Ray cluster (e.g. head:6379, "
                   "auto); every node must see the repository at the same path")
    p.add_argument("--cpus-per-stage", type=float, default=1.0, help="with --ray: CPUs a stage asks for (default 1)")
    p.add_argument("--gpus-per-stage", type=float, default=0.0, help="with --ray: GPUs a stage asks for (default 0)")
    p.add_argument("--share-cores", action="store_true", help="here: threads: 0 is cores / jobs for each stage (faster on "
                   "a CPU; the thread count changes the results)")
    p.set_defaults(func=_repro)
    _add_solve(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(args.func, args)
