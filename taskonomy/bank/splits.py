"""The rendered task bank on disk (docs/bank-format.md): one folder per split, one ``.npy`` per array.

Writing is atomic per split: arrays go into a hidden temporary sibling folder, the split manifest is
written last, and the folder is renamed into place; a crash leaves the previous split (if any) as it
was and no folder that looks complete. Reading memory-maps every array (``np.load(mmap_mode="r")``) and
checks it against the manifest, so loading costs a header read per array.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from taskonomy.errors import DataError
from taskonomy.storage import atomic_write_json

FORMAT = 1
MANIFEST = "manifest.json"


def write_split(root: str | Path, split: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write one split atomically; ``meta`` goes into its manifest (``meta["encodings"]`` names each array's
    encoding). Returns the split's folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / split
    tmp = root / f".{split}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = dict(meta)
    encodings = meta.pop("encodings", {})
    try:
        entries = {}
        for name, value in arrays.items():
            value = np.ascontiguousarray(value)
            np.save(tmp / f"{name}.npy", value, allow_pickle=False)
            entries[name] = {"shape": list(value.shape), "dtype": value.dtype.name,
                             "encoding": encodings.get(name, "")}
        atomic_write_json(tmp / MANIFEST, {"format": FORMAT, "split": split, **meta, "arrays": entries},
                          sort_keys=True)
        if final.exists():
            old = root / f".{split}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def write_manifest(root: str | Path, splits: list[str], params: dict[str, Any]) -> None:
    """The top-level manifest, written after every split."""
    atomic_write_json(Path(root) / MANIFEST, {"format": FORMAT, "splits": list(splits), "params": params},
                      sort_keys=True)


def read_manifest(root: str | Path) -> dict:
    """The top-level manifest of a bank (``DataError`` if missing or malformed)."""
    return _read_json(Path(root) / MANIFEST)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing (not rendered, or the render did not finish)") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: not a format-{FORMAT} manifest")
    return data


@dataclass(frozen=True)
class Split:
    """One loaded split: read-only memory-mapped arrays and the manifest that describes them."""
    path: Path
    manifest: dict
    arrays: dict[str, np.ndarray]

    @property
    def n_views(self) -> int:
        return int(self.manifest["n_views"])

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise DataError(f"{self.path}: no array {name!r} (has: {', '.join(self.arrays)})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.arrays


def load_split(root: str | Path, split: str) -> Split:
    """Memory-map every array of ``split``, checked against its manifest; any mismatch is a DataError."""
    path = Path(root) / split
    if Path(root).exists() and not Path(root).is_dir():
        raise DataError(f"{root}: a file, not a bank folder")
    if not path.is_dir():
        raise DataError(f"{path}: split not found (run the render stage)")
    manifest = _read_json(path / MANIFEST)
    arrays = {}
    for name, spec in manifest.get("arrays", {}).items():
        file = path / f"{name}.npy"
        try:
            value = np.load(file, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{file}: missing") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{file}: unreadable or truncated ({err})") from None
        if list(value.shape) != spec["shape"] or value.dtype.name != spec["dtype"]:
            raise DataError(f"{file}: expected {spec['dtype']} {tuple(spec['shape'])}, "
                            f"found {value.dtype.name} {value.shape}")
        arrays[name] = value
    n, r = manifest.get("n_views"), manifest.get("resolution")
    if "rgb" in arrays and arrays["rgb"].shape[:1] + arrays["rgb"].shape[2:] != (n, r, r):
        raise DataError(f"{path / MANIFEST}: says {n} views at {r} px, but rgb.npy holds "
                        f"{arrays['rgb'].shape[0]} at {arrays['rgb'].shape[-1]} px")
    return Split(path=path, manifest=manifest, arrays=arrays)


def check_same_bank(splits: dict[str, Split]) -> None:
    """Splits that are trained and evaluated together share their resolution and views per scene; a
    split rendered with other params is a DataError naming both, before any work."""
    a, *rest = splits.values()
    for b in rest:
        for key in ("resolution", "views_per_scene"):
            if a.manifest.get(key) != b.manifest.get(key):
                raise DataError(f"{b.path / MANIFEST}: {key} {b.manifest.get(key)}, but {a.path / MANIFEST} "
                                f"has {a.manifest.get(key)}: the splits come from different renders")


def load_splits(root: str | Path, names: tuple[str, ...] = ("train", "transfer", "test")) -> dict[str, Split]:
    """:func:`load_split` for each of ``names`` (all three by default), by name, after the bank's
    top-level manifest (written last by the render) and checked against each other."""
    read_manifest(root)
    splits = {name: load_split(root, name) for name in names}
    check_same_bank(splits)
    return splits
