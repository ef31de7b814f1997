"""Affinity tables on disk, the one reader of them: the project's ``affinities.csv`` or Taskonomy's
published pickles, as the solver's :class:`~taskonomy.analysis.taxonomy.Transfer` list. Published
pickles are dicts ``'src1__...__srcK__target' -> value`` (``results/affinities/all_affinities*.pkl``), with
the matching win rates in ``results/winrates/wins_vs_{task,pixels}*.pkl`` (reference §4.2).
"""
from __future__ import annotations

import csv
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from taskonomy.analysis.affinity import TABLE_COLUMNS
from taskonomy.analysis.taxonomy import Transfer
from taskonomy.errors import DataError
from taskonomy.sources import PIXELS, parse, parse_transfer_key

if TYPE_CHECKING:
    import pandas as pd


def load_pickle_dict(path: Path, upper: float = math.inf) -> dict[str, float]:
    """A published Taskonomy pickle: ``dict{'src__...__target': number}``, each finite in [0, ``upper``]
    (affinities are unbounded, win rates are at most 1)."""
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
        parse_transfer_key(key, str(path))
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{path}: value of {key!r} is not a number: {value!r}") from None
        if not math.isfinite(v) or not 0 <= v <= upper:
            bound = ">= 0" if upper == math.inf else f"in [0, {upper:g}]"
            raise DataError(f"{path}: value of {key!r} must be finite and {bound}, got {v}")
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
            scores[kind] = load_pickle_dict(p, upper=1.0)  # win rates
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
        sources, target = parse_transfer_key(key, str(path))
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
        sources = parse(row.sources)
        if not all(sources):
            raise DataError(f"{path}: line {i}: malformed sources {row.sources!r}")
        aff = float(row.affinity)
        if not (math.isfinite(aff) and aff >= 0):
            raise DataError(f"{path}: line {i}: affinity must be finite and >= 0, got {row.affinity!r}")
        rates = {c: float(getattr(row, c, math.nan)) for c in ("quality", "gain")}
        for c, v in rates.items():  # win rates; empty (NaN) where not measured
            if not (math.isnan(v) or 0 <= v <= 1):
                raise DataError(f"{path}: line {i}: {c} is a win rate in [0, 1] (or empty), got {v:g}")
        transfers.append(Transfer(sources, row.target, aff, rates["quality"], rates["gain"]))
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


def read_affinity_rows(path: str | Path) -> list[dict[str, str]]:
    """First-order (and other) rows of an affinity table written by the ``affinity`` stage.

    Two layouts are accepted: the long table (``reports/affinities.csv``: columns target, sources,
    order, affinity, ...) and the first-order matrix (``first_order_affinities.csv``: one row per
    source, one column per target, the source names in the first column). The matrix is what a
    pipeline with higher orders reads, since the long table then depends on ``transfer_high``.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or ())
            rows = list(reader)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage affinity_first") from None
    if {"target", "sources", "order", "affinity"} <= set(columns):
        return rows
    if "target" in columns or "sources" in columns or len(columns) < 2:
        missing = {"target", "sources", "order", "affinity"} - set(columns)
        raise DataError(f"{path}: missing columns {', '.join(sorted(missing))} (written by the affinity stage)")
    index, targets = columns[0], columns[1:]
    return [dict(target=t, sources=row[index], order="1", affinity=row[t])
            for row in rows for t in targets if row[t] not in ("", "nan", "NaN")]


def read_first_order(path: Path, stage: str = "affinity_first") -> "pd.DataFrame":
    """A first-order matrix of stage ``affinity_first`` (``first_order_affinities.csv`` or
    ``first_order_losses.csv``): sources x targets, the source names as the index."""
    import pandas as pd

    try:
        return pd.read_csv(path, index_col=0)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; it is written by stage {stage}") from None
    except Exception as err:  # pandas raises several parser / encoding errors
        raise DataError(f"{path}: not a readable CSV ({type(err).__name__}); rerun stage {stage}") from None
