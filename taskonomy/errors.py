"""The project's error types.

Anything a user can cause (bad params, a missing file, a corrupt checkpoint) raises
:class:`TaskonomyError` with a message that names the key, file or task; the entry points
(:mod:`taskonomy.stage`) show it as one line and exit non-zero. Programming errors raise normally.
"""
from __future__ import annotations


class TaskonomyError(Exception):
    """An error caused by the user's input; its message is shown as one line."""


class ParamsError(TaskonomyError):
    """A value in params.yaml is unknown, of the wrong type or out of range."""


class DataError(TaskonomyError):
    """A data file (rendered split, manifest, loss file, checkpoint) is missing or malformed."""
