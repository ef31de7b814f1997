"""Running an entry point: a user's error as one line and exit 2, and each stage's timing.

Entry points run their ``main`` through :func:`run_main`, which prints ``error: <message>`` on stderr
and exits 2 for a :class:`~taskonomy.errors.TaskonomyError` instead of showing a traceback.

Every stage also takes ``--timing PATH`` through :func:`run_stage`: on success it writes the stage's
wall-clock seconds since its process started (imports included) as JSON, which the report collects
(dvc.yaml passes ``logs/timings/<stage>.json``: git-ignored and not a stage output, since a timing is no
result and, as an output, would make every checkout or rerun look like a change). What a stage times
inside itself (training, encoding) it adds with :func:`note_timing`: no stage output holds a time or a
load average, so a stage run twice on one machine writes the same bytes and ``dvc.lock`` the same hashes.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn

from taskonomy.errors import TaskonomyError

# The cores a stage is given where the concurrent runner (taskonomy.runner) shares the machine among stages;
# taskonomy.nets.train.given_cores reads it.
CORES_ENV = "TASKONOMY_CORES"

_IMPORTED = time.time()
_NOTES: dict[str, object] = {}


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def process_seconds() -> float:
    """Wall-clock seconds since this process started (Linux: from /proc, so the time spent importing
    torch counts); elsewhere since this module was imported."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED


def _pop_timing(argv: list[str]) -> tuple[Path | None, list[str]]:
    """``--timing PATH`` (or ``--timing=PATH``) taken out of ``argv``."""
    for i, arg in enumerate(argv):
        if arg == "--timing" and i + 1 < len(argv):
            return Path(argv[i + 1]), argv[:i] + argv[i + 2:]
        if arg.startswith("--timing="):
            return Path(arg.split("=", 1)[1]), argv[:i] + argv[i + 1:]
    return None, argv


def note_timing(**fields: object) -> None:
    """Add ``fields`` (e.g. ``train_seconds``) to this stage's timing record (with ``--timing``)."""
    _NOTES.update(fields)


def timing_notes() -> dict[str, object]:
    """What this process has noted so far (:func:`note_timing`)."""
    return dict(_NOTES)


def write_timing(path: Path, argv: list[str]) -> None:
    from taskonomy.storage import atomic_write_json

    atomic_write_json(path, {"seconds": round(process_seconds(), 2), "loadavg": round(os.getloadavg()[0], 2),
                             **_NOTES, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "command": " ".join([Path(sys.argv[0]).name, *argv])})


def run_main(main: Callable[..., int | None], *args, **kwargs) -> NoReturn:
    """Run an entry point; a :class:`TaskonomyError` becomes one line on stderr and exit code 2."""
    try:
        code = main(*args, **kwargs)
    except TaskonomyError as err:
        fail(" ".join(str(err).split()))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    raise SystemExit(code or 0)


def run_stage(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> NoReturn:
    """:func:`run_main` for a stage script's ``main(argv)``; with ``--timing PATH`` among the
    arguments, a successful run also writes its timing there (:func:`write_timing`)."""
    timing, argv = _pop_timing(sys.argv[1:] if argv is None else list(argv))

    def timed(argv: list[str]) -> int | None:
        code = main(argv)
        if timing is not None and not code:
            write_timing(timing, argv)
        return code

    run_main(timed, argv)
