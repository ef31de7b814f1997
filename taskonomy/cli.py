"""The ``taskonomy`` command (also ``python -m taskonomy``).

Subcommands:
  check-params [PATH]   validate a params file and print its sections
  solve ...             solve a taxonomy (BIP) on an affinity table or Taskonomy's published pickle
"""
from __future__ import annotations

import argparse
import json

from taskonomy import __version__
from taskonomy.errors import run_main


def _check_params(args: argparse.Namespace) -> int:
    from taskonomy.config import as_dict, load_params

    params = load_params(args.path)
    print(json.dumps(as_dict(params), indent=1))
    print(f"{args.path}: ok ({len(params.tasks)} tasks, {len(params.targets())} targets)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskonomy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"taskonomy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-params", help="validate a params file")
    p.add_argument("path", nargs="?", default="params.yaml")
    p.set_defaults(func=_check_params)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(args.func, args)
