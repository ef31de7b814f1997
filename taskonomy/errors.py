"""User-facing errors and the wrapper that turns them into one line and a non-zero exit.

Anything a user can cause (bad params, a missing file, a corrupt checkpoint) raises
:class:`TaskonomyError` with a message that names the key, file or task; entry points run their
``main`` through :func:`run_main`, which prints ``error: <message>`` on stderr and exits 2 instead of
showing a traceback. Programming errors still raise normally.
"""
from __future__ import annotations

import sys
from typing import Callable, NoReturn


class TaskonomyError(Exception):
    """An error caused by the user's input; its message is shown as one line."""


class ParamsError(TaskonomyError):
    """A value in params.yaml is unknown, of the wrong type or out of range."""


class DataError(TaskonomyError):
    """A data file (rendered split, manifest, loss file, checkpoint) is missing or malformed."""


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_main(main: Callable[..., int | None], *args, **kwargs) -> NoReturn:
    """Run an entry point; a :class:`TaskonomyError` becomes one line on stderr and exit code 2."""
    try:
        code = main(*args, **kwargs)
    except TaskonomyError as err:
        fail(" ".join(str(err).split()))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    raise SystemExit(code or 0)
