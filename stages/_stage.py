"""What every stage script runs first: a check that this is the project's Python.

DVC runs a stage's ``cmd`` (``python stages/<stage>.py ...``) with the ``python`` first on PATH. Run
as ``.venv/bin/dvc repro`` from a shell where the project's environment is not activated, that is a
Python without the project. Then the stage runs itself again with the repository's
``.venv/bin/python`` (the environment ``make`` creates) and says so in one line; without one, it stops
with one line naming the Python, what it cannot import and how to fix it. Only the standard library is
used until the check has passed.
"""
from __future__ import annotations

import importlib.util
import os
import sys

NEEDS = ("taskonomy", "torch")
REEXEC = "TASKONOMY_STAGE_REEXEC"  # set in the re-executed stage: a second failure stops, never loops


def check_python(name: str, script: str) -> None:
    """For ``__main__`` (a stage run, not an import of its module): :func:`ensure_project_python`."""
    if name == "__main__":
        ensure_project_python(script)


def ensure_project_python(script: str) -> None:
    """Return if this Python imports the project; else re-execute ``script`` with the repository's
    ``.venv/bin/python``, or exit with a one-line error."""
    missing = [module for module in NEEDS if importlib.util.find_spec(module) is None]
    if not missing:
        return
    stage = os.path.basename(script)
    venv = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(script))), ".venv")
    python = os.path.join(venv, "bin", "python")
    problem = f"{stage}: {sys.executable} (the python on PATH) cannot import {', '.join(missing)}"
    if os.access(python, os.X_OK) and not os.environ.get(REEXEC):
        print(f"{problem}; running the stage with {python}", file=sys.stderr, flush=True)
        os.execve(python, [python, script, *sys.argv[1:]], {**os.environ, REEXEC: "1"})
    print(f"{problem}: run `make repro`, or put the project's environment first on PATH "
          f"(`source {venv}/bin/activate`)", file=sys.stderr)
    sys.exit(2)
