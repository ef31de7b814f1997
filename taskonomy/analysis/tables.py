"""Affinity data on disk: the per-item loss files the affinity stage reads, and the affinity tables
the solver reads (the project's ``affinities.csv`` or Taskonomy's published pickles).

Loss files follow docs/losses-format.md; every path is built from the task list, never globbed, and a
missing file is a :class:`DataError` naming the file and the stage that writes it. Published pickles
are dicts ``'src1__...__srcK__target' -> value`` (``results/affinities/all_affinities*.pkl``), with
the matching win rates in ``results/winrates/wins_vs_{task,pixels}*.pkl`` (reference §4.2).
"""
from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from taskonomy.analysis.affinity import PIXELS, SELF, SEP, TABLE_COLUMNS
from taskonomy.errors import DataError
from taskonomy.analysis.taxonomy import Transfer

# --------------------------------------------------------------------------------------------------
# Per-item loss files (docs/losses-format.md)
# --------------------------------------------------------------------------------------------------


def _check_array(a: np.ndarray, where: str) -> np.ndarray:
    if a.ndim != 1 or a.size == 0:
        raise DataError(f"{where}: expected a 1-D array of per-item losses, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{where}: expected numbers, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: non-finite loss at item {int(np.flatnonzero(~np.isfinite(a))[0])}")
    return a.astype(np.float64)


def _missing(path: Path, stage: str) -> DataError:
    return DataError(f"{path}: missing; it is written by stage {stage}")


def load_npy(path: Path, stage: str) -> np.ndarray:
    """One (N,) loss array from a ``.npy`` file, checked."""
    if not path.is_file():
        raise _missing(path, stage)
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy file ({err})") from None
    return _check_array(a, str(path))


def load_npz(path: Path, stage: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The named (N,) arrays of a ``.npz`` file, checked; a missing key names file and key."""
    if not path.is_file():
        raise _missing(path, stage)
    try:
        with np.load(path, allow_pickle=False) as z:
            present = set(z.files)
            out = {}
            for k in keys:
                if k not in present:
                    raise DataError(f"{path}: no key '{k}' (has: {', '.join(sorted(present)) or 'none'}); "
                                    f"rerun stage {stage}")
                out[k] = _check_array(z[k], f"{path}[{k}]")
            return out
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz file ({err})") from None


def read_target_losses(targets: Sequence[str], sources: Sequence[str], *, models: Path, transfer: Path,
                       pixels: Path, high: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-target loss dicts for :func:`taskonomy.analysis.affinity.affinity_table`.

    For every target t: ``self`` from ``models/<t>/test_losses.npy``; one first-order entry per
    source s from ``transfer/<s>/losses.npz[t]`` (``random`` is a source like any task); ``pixels``
    from ``pixels[t]``; with ``high``, every key of ``high/<t>/losses.npz`` (source sets joined by
    ``__``). All arrays of a target must have the same length.
    """
    per_source = {s: load_npz(transfer / s / "losses.npz", f"transfer@{s}", list(targets)) for s in sources}
    pixel_losses = load_npz(pixels, "transfer", list(targets))
    out: dict[str, dict[str, np.ndarray]] = {}
    for t in targets:
        self_path = models / t / "test_losses.npy"
        losses = {SELF: load_npy(self_path, f"train_task@{t}")}
        where = {SELF: str(self_path)}
        for s in sources:
            losses[s] = per_source[s][t]
            where[s] = f"{transfer / s / 'losses.npz'}[{t}]"
        if high is not None:
            path = high / t / "losses.npz"
            if not path.is_file():
                raise _missing(path, "transfer_high")
            try:
                with np.load(path, allow_pickle=False) as z:
                    names = list(z.files)
            except (OSError, ValueError, zipfile.BadZipFile) as err:
                raise DataError(f"{path}: not a readable .npz file ({err})") from None
            for key, a in load_npz(path, "transfer_high", names).items():
                if len(key.split(SEP)) < 2 or key in losses:
                    raise DataError(f"{path}[{key}]: expected a source set of order >= 2 joined by '{SEP}'")
                losses[key], where[key] = a, f"{path}[{key}]"
        losses[PIXELS], where[PIXELS] = pixel_losses[t], f"{pixels}[{t}]"
        n = losses[SELF].size
        for key, a in losses.items():
            if a.size != n:
                raise DataError(f"{where[key]}: {a.size} items for target {t}, but {where[SELF]} has {n}")
        out[t] = losses
    return out


# --------------------------------------------------------------------------------------------------
# Affinity tables for the solver
# --------------------------------------------------------------------------------------------------


def split_key(key: str, where: str) -> tuple[tuple[str, ...], str]:
    """``'a__b__t'`` -> (('a', 'b'), 't')."""
    parts = key.split(SEP) if isinstance(key, str) else []
    if len(parts) < 2 or not all(parts):
        raise DataError(f"{where}: key {key!r} is not of the form 'source1__...__target'")
    return tuple(parts[:-1]), parts[-1]


def load_pickle_dict(path: Path) -> dict[str, float]:
    """A published Taskonomy pickle: ``dict{'src__...__target': number}``, checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as err:  # unpickling raises anything from EOFError to ModuleNotFoundError
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a non-empty dict 'source__target' -> value, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        split_key(key, str(path))
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: value of {key!r} is not a number: {value!r}") from None
        if not math.isfinite(v) or v < 0:
            raise DataError(f"{path}: value of {key!r} must be finite and >= 0, got {v}")
        out[key] = v
    return out


def published_winrate_paths(affinity_path: Path) -> tuple[Path, Path]:
    """Where the standard layout keeps the win rates of ``.../affinities/all_affinities<sfx>.pkl``:
    ``.../winrates/wins_vs_task<sfx>.pkl`` (quality) and ``wins_vs_pixels<sfx>.pkl`` (gain)."""
    affinity_path = Path(affinity_path)
    suffix = affinity_path.stem.removeprefix("all_affinities")
    root = affinity_path.parent.parent / "winrates"
    return root / f"wins_vs_task{suffix}.pkl", root / f"wins_vs_pixels{suffix}.pkl"


def load_published(path: Path, quality: Path | None = None, gain: Path | None = None,
                   need: str | None = None) -> tuple[list[Transfer], list[str]]:
    """Transfers from a published affinity pickle, with quality and gain from the win-rate pickles.

    ``quality``/``gain`` default to the standard relative layout (:func:`published_winrate_paths`);
    when a file is absent the score is NaN, unless ``need`` names it (``quality``/``gain``), which
    makes the absence a :class:`DataError`. Returns the transfers and notes for the user.
    """
    path = Path(path)
    affinity = load_pickle_dict(path)
    default_q, default_g = published_winrate_paths(path)
    notes, scores = [], {}
    for kind, given, default in (("quality", quality, default_q), ("gain", gain, default_g)):
        p = Path(given) if given is not None else default
        if p.is_file() or given is not None:
            scores[kind] = load_pickle_dict(p)
            missing = [k for k in affinity if k not in scores[kind]]
            if missing and need == kind:
                raise DataError(f"{p}: no {kind} for {len(missing)} transfers of {path.name}, e.g. {missing[0]}")
        elif need == kind:
            raise DataError(f"the {kind} objective needs win rates: {p} not found; pass --{kind} PATH")
        else:
            scores[kind] = {}
            notes.append(f"{kind}: not available ({p} not found)")
    transfers = []
    for key, value in affinity.items():
        sources, target = split_key(key, str(path))
        transfers.append(Transfer(sources, target, value, scores["quality"].get(key, math.nan),
                                  scores["gain"].get(key, math.nan)))
    return transfers, notes


def load_table(path: Path) -> list[Transfer]:
    """Transfers from the project's affinity table (``reports/affinities.csv``, stage ``affinity``)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, dtype={"target": str, "sources": str})
    except Exception as err:  # pandas raises several parser/encoding errors
        raise DataError(f"{path}: not a readable CSV table ({type(err).__name__})") from None
    missing = [c for c in ("target", "sources", "affinity") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}' (expected {', '.join(TABLE_COLUMNS)})")
    if df.empty:
        raise DataError(f"{path}: the table has no rows")
    for c in ("affinity", "quality", "gain"):
        if c in df.columns and not pd.api.types.is_numeric_dtype(df[c]):
            raise DataError(f"{path}: column '{c}' must be numeric")
    transfers = []
    for i, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        if not isinstance(row.target, str) or not isinstance(row.sources, str) or not row.target or not row.sources:
            raise DataError(f"{path}: line {i}: empty target or sources")
        if row.sources == PIXELS:
            continue  # the from-scratch baseline is the reference of gain, not a transfer
        sources = tuple(row.sources.split(SEP))
        if not all(sources):
            raise DataError(f"{path}: line {i}: malformed sources {row.sources!r}")
        aff = float(row.affinity)
        if not (math.isfinite(aff) and aff >= 0):
            raise DataError(f"{path}: line {i}: affinity must be finite and >= 0, got {row.affinity!r}")
        transfers.append(Transfer(sources, row.target, aff, float(getattr(row, "quality", math.nan)),
                                  float(getattr(row, "gain", math.nan))))
    return transfers


def load_transfers(path: Path, quality: Path | None = None, gain: Path | None = None,
                   need: str | None = None) -> tuple[list[Transfer], list[str]]:
    """Transfers from ``path``: ``.csv`` (the project's table) or ``.pkl`` (Taskonomy's published
    affinities). ``need`` = the objective's score that must be present (``quality``/``gain``)."""
    path = Path(path)
    if path.suffix == ".csv":
        if quality is not None or gain is not None:
            raise DataError(f"{path}: --quality/--gain apply to published pickles; the table has its own columns")
        transfers = load_table(path)
        if need and all(math.isnan(getattr(t, need)) for t in transfers):
            raise DataError(f"{path}: the {need} objective needs the '{need}' column, which is empty")
        return transfers, []
    if path.suffix == ".pkl":
        return load_published(path, quality, gain, need)
    raise DataError(f"{path}: unknown affinity format '{path.suffix}' (expected .csv or .pkl)")


def winrate_dict(transfers: Sequence[Transfer], metric: str) -> Mapping[str, float]:
    """``{key: metric}`` of transfers (the published pickles' layout)."""
    return {t.key: getattr(t, metric) for t in transfers}
