"""Atomic file output: every file a stage writes appears whole or not at all.

:func:`atomic_path` yields a temporary sibling path to write to and renames it over the destination
only when the block succeeds, so an interrupted stage leaves the previous file (or none), never half
of one. The helpers below cover the formats the stages write.

A write that fails for want of room or permission is a :class:`~taskonomy.errors.DataError` naming
the path and the cause (libraries word a full disk their own way: torch's ``unexpected pos``), and
:func:`ensure_writable` lets a stage find a read-only output folder before its work, not after.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from taskonomy.errors import DataError

_CAUSES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}
FULL_BELOW = 1 << 20   # bytes free under which a failed write is blamed on a full disk


def _write_error(path: Path, err: BaseException) -> DataError | None:
    """The DataError for a write of ``path`` that failed with ``err``, or None if it is not about room
    or permission (then ``err`` stands)."""
    cause = _CAUSES.get(getattr(err, "errno", None))
    if cause is None:
        try:
            if shutil.disk_usage(path.parent).free < FULL_BELOW:
                cause = _CAUSES[errno.ENOSPC]
        except OSError:
            pass
    return None if cause is None else DataError(f"{path}: cannot write it: {cause}")


def ensure_writable(*folders: str | Path) -> None:
    """Create ``folders`` and check a file can be made in each; else a DataError naming the folder."""
    for folder in map(Path, folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-probe.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise DataError(f"{folder}: cannot write there: {_CAUSES.get(err.errno, err.strerror)}") from None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:     # RuntimeError: torch.save on a full disk
        problem = _write_error(path, err)
        if problem is None:
            raise
        raise problem from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, data: Any, **kwargs) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, **kwargs) + "\n")


def atomic_write_csv(path: str | Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]], **kwargs) -> None:
    """A header of ``fields`` and one line per row (``csv.DictWriter``; ``kwargs`` go to it)."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fields, **kwargs)
        writer.writeheader()
        writer.writerows(rows)


def atomic_save(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def atomic_savez(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
