"""Stage ``task_list``: the task list and every task's role, as a file other stages depend on.

Stages that need every task's role but none of its training settings (the transfers, the pixels
baseline, the affinities, the taxonomy) depend on this file instead of the whole ``tasks`` params
section. Editing one task's ``epochs`` reruns this stage in a second, the file comes out identical,
and DVC's early cut-off keeps every other source's transfers cached; adding a task or changing a
role changes the file and reruns them all.
"""
from __future__ import annotations

from _stage import check_python

check_python(__name__, __file__)  # the project's Python, or one line saying how to get it

import argparse
import json
from pathlib import Path

from taskonomy.config import load_params
from taskonomy.stage import run_stage
from taskonomy.storage import atomic_write_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    roles = {"tasks": list(params.tasks), "targets": params.targets(),
             "source_only": params.source_only(),
             "target_only": params.target_only(), "encoders": list(params.encoders)}
    atomic_write_text(args.out, json.dumps(roles, indent=1) + "\n")
    print(f"task_list: {len(roles['tasks'])} tasks, {len(roles['targets'])} targets -> {args.out}")
    return 0


if __name__ == "__main__":
    run_stage(main)
