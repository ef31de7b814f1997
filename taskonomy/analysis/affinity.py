"""Win rates and AHP affinities: from per-item test losses to one affinity per transfer.

Taskonomy's step III, "ordinal normalization using the Analytic Hierarchy Process" (Zamir et al.,
CVPR 2018, §3.3; reference notes §4). Losses of different targets live on incomparable scales, so
each target holds its own tournament among all of its transfers, on the same ordered test items:

    W_t[i, j] = (1/N) · Σ_I 1[ L_i(I) < L_j(I) ]          fraction of items where transfer i beats j
    W_t      ← clip(W_t, c, 1 − c)                        ("Laplace smoothing", c = 0.001)
    W'_t     = W_t ⊘ W_tᵀ                                 positive reciprocal: W'[j, i] = 1 / W'[i, j]
    p_t      = principal (Perron) eigenvector of W'_t, positive, Σ p_t = 1

The tournament of a target is over every transfer into it (all orders, including t ← t), plus
``self`` (the fully supervised task network) and ``random`` (a readout of a random encoder);
``pixels`` (trained from scratch on the small transfer data) stays out of it and serves only as the
reference of **gain**. **Quality** is the win rate against ``self``.

Everything here is pure NumPy (pandas only to shape the table); reading the loss files is
:mod:`taskonomy.analysis.tables`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from typing import TYPE_CHECKING

import numpy as np

from taskonomy.errors import DataError
from taskonomy.sources import PIXELS, SELF, order

if TYPE_CHECKING:  # pandas only shapes the tables; not imported by `taskonomy solve` on a pickle
    import pandas as pd

TABLE_COLUMNS = ("target", "sources", "order", "affinity", "quality", "gain", "mean_loss")


def win_rates(losses: np.ndarray) -> np.ndarray:
    """Pairwise win-rate matrix of K transfers evaluated on the same N items (lower loss wins).

    ``W[i, j] = (1/N) Σ_I 1[L[i, I] < L[j, I]]`` (strict: ties count for neither side, so
    ``W[i, j] + W[j, i] <= 1``). The diagonal is set to 1/2, the convention of the published
    Taskonomy win rates (``wins_vs_task[self__t] == 0.5``); it does not affect :func:`ahp`, whose
    reciprocal matrix has ones on its diagonal either way.

    Args:
        losses: (K, N) per-item losses, K transfers by N items, all finite.
    Returns:
        (K, K) float64 matrix with entries in [0, 1].
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 2 or losses.shape[1] == 0:
        raise ValueError(f"losses must be (K transfers, N > 0 items), got shape {losses.shape}")
    if not np.all(np.isfinite(losses)):
        raise ValueError("losses must be finite")
    k, n = losses.shape
    w = np.empty((k, k))
    for i in range(k):  # K passes over a (K, N) array: K^2 N compares, O(K N) memory
        w[i] = np.count_nonzero(losses[i][None, :] < losses, axis=1) / n
    np.fill_diagonal(w, 0.5)
    return w


def reciprocal_matrix(w: np.ndarray, clip: float = 0.001) -> np.ndarray:
    """AHP pairwise-comparison matrix ``W' = clip(W) ⊘ clip(W)ᵀ`` (so ``W' ∘ W'ᵀ = 1``).

    Clipping to [clip, 1 - clip] keeps every ratio finite and positive (at most (1-c)/c).
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise ValueError(f"win-rate matrix must be square and non-empty, got shape {w.shape}")
    if not 0 < clip < 0.5:
        raise ValueError(f"clip must be in (0, 0.5), got {clip}")
    wc = np.clip(w, clip, 1.0 - clip)
    return wc / wc.T


def ahp(w: np.ndarray, clip: float = 0.001) -> np.ndarray:
    """AHP priorities of a win-rate tournament: the principal eigenvector of ``W'`` (Saaty 1980).

    ``W' = clip(W, c, 1-c) ⊘ clip(W, c, 1-c)ᵀ`` is a positive matrix, so by Perron-Frobenius its
    largest eigenvalue is real and simple with an eigenvector of one sign; it is returned positive
    and L1-normalised (Σ p = 1), as are the published Taskonomy affinities per target
    (reference §4.1-4.2).

    Args:
        w: (K, K) win rates, ``w[i, j]`` = fraction of items where i beats j (:func:`win_rates`).
        clip: smoothing; win rates are clipped to [clip, 1 - clip] (Taskonomy: 0.001).
    Returns:
        (K,) float64, positive, sums to 1; larger means a better transfer.
    """
    wr = reciprocal_matrix(w, clip)
    eigenvalues, eigenvectors = np.linalg.eig(wr)
    v = np.abs(np.real(eigenvectors[:, np.argmax(np.real(eigenvalues))]))  # the Perron vector has one sign
    return v / v.sum()


def _stack(target: str, losses: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Check one target's loss arrays (1-D, same length, finite) and stack them as (K, N)."""
    keys = list(losses)
    arrays = [np.asarray(losses[k], dtype=np.float64) for k in keys]
    ref = keys.index(SELF) if SELF in keys else 0
    n = arrays[ref].shape
    for key, a in zip(keys, arrays):
        if a.ndim != 1 or a.size == 0:
            raise DataError(f"target {target}, transfer {key}: expected a 1-D array of per-item losses, "
                            f"got shape {a.shape}")
        if a.shape != n:
            raise DataError(f"target {target}, transfer {key}: {a.size} items, but {keys[ref]} has {n[0]}")
        if not np.all(np.isfinite(a)):
            raise DataError(f"target {target}, transfer {key}: non-finite loss at item "
                            f"{int(np.flatnonzero(~np.isfinite(a))[0])}")
    return keys, np.stack(arrays)  # (K, N)


def scores(keys: Sequence[str], stacked: np.ndarray, clip: float = 0.001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affinity, quality and gain, (K,) each, of the K transfers ``keys`` with (K, N) per-item losses
    ``stacked`` (``self`` among them): :func:`target_scores`' numbers, without the checks and the table."""
    keys = list(keys)
    w = win_rates(stacked)
    in_tournament = [i for i, k in enumerate(keys) if k != PIXELS]
    affinity = np.full(len(keys), np.nan)
    affinity[in_tournament] = ahp(w[np.ix_(in_tournament, in_tournament)], clip)
    quality = w[:, keys.index(SELF)]
    gain = w[:, keys.index(PIXELS)] if PIXELS in keys else np.full(len(keys), np.nan)
    return affinity, quality, gain


def target_scores(target: str, losses: Mapping[str, np.ndarray], clip: float = 0.001) -> pd.DataFrame:
    """Affinity, quality, gain and mean loss of every transfer into one target.

    Args:
        target: the target's name (for the table and for error messages).
        losses: source key -> (N,) per-item test losses on the target's test items, in one shared
            item order. Keys: source names joined by ``__`` (``rgb2sfnorm__reshade``), ``self``
            (required), ``random``, and optionally ``pixels``.
        clip: AHP smoothing (:func:`ahp`).
    Returns:
        One row per key, columns :data:`TABLE_COLUMNS`. ``affinity`` is the AHP priority within the
        tournament of all keys except ``pixels`` (NaN for ``pixels``); ``quality`` is the win rate
        against ``self``, ``gain`` the win rate against ``pixels`` (NaN without ``pixels``).
    """
    import pandas as pd

    if SELF not in losses:
        raise DataError(f"target {target}: no '{SELF}' losses (the task network); quality needs them")
    keys, stacked = _stack(target, losses)
    affinity, quality, gain = scores(keys, stacked, clip)
    return pd.DataFrame({
        "target": target, "sources": keys, "order": [order(k) for k in keys],
        "affinity": affinity, "quality": quality, "gain": gain, "mean_loss": stacked.mean(axis=1),
    }, columns=list(TABLE_COLUMNS))


def affinity_table(losses: Mapping[str, Mapping[str, np.ndarray]], clip: float = 0.001) -> pd.DataFrame:
    """The whole affinity table: :func:`target_scores` for every target, concatenated.

    Args:
        losses: target -> (source key -> (N_t,) per-item losses); see :func:`target_scores`.
    Returns:
        One row per (target, transfer); ``affinity`` sums to 1 per target, as in Taskonomy's
        ``all_affinities*.pkl``.
    """
    import pandas as pd

    if not losses:
        raise DataError("no targets: the affinity table needs at least one target's losses")
    frames = [target_scores(t, per_target, clip) for t, per_target in losses.items()]
    return pd.concat(frames, ignore_index=True)


def first_order_matrices(losses: Mapping[str, Mapping[str, np.ndarray]], clip: float = 0.001,
                         sources: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """First-order (sources x targets) matrices of raw mean losses and of AHP affinities.

    The affinities are AHP re-run per target on its first-order transfers only (every single
    source, including t <- t and ``random``; not ``self`` or ``pixels``), so each column sums to 1,
    like the paper's Figure 7. (The published affinities are one eigenvector over all orders, whose
    first-order part does not sum to 1; reference §4.2.)

    Args:
        losses: as for :func:`affinity_table`.
        sources: row order; by default the first-order sources in order of first appearance.
    Returns:
        (mean_loss, affinity), both indexed by source with one column per target; NaN where a
        target has no transfer from that source.
    """
    import pandas as pd

    columns_loss, columns_aff = {}, {}
    for target, per_target in losses.items():
        first = {k: v for k, v in per_target.items() if order(k) == 1}
        if not first:
            raise DataError(f"target {target}: no first-order transfer losses")
        keys, stacked = _stack(target, first)
        columns_loss[target] = pd.Series(stacked.mean(axis=1), index=keys)
        columns_aff[target] = pd.Series(ahp(win_rates(stacked), clip), index=keys)
    if sources is None:
        sources = list(dict.fromkeys(k for col in columns_loss.values() for k in col.index))
    mean_loss = pd.DataFrame(columns_loss).reindex(index=list(sources))
    affinity = pd.DataFrame(columns_aff).reindex(index=list(sources))
    mean_loss.index.name = affinity.index.name = "source"
    return mean_loss, affinity


def gold_standard(table: pd.DataFrame) -> dict:
    """How the task networks ("self", the gold standard) fare against the transfers into them, from an
    :func:`affinity_table`: the share of targets whose task network has a lower mean test loss than
    every first-order transfer, and than every transfer of any order, and the mean over targets of the
    best transfer's quality (its win rate against self). For ``dvc metrics`` (reports/metrics/affinity.json)."""
    wins_first, wins_any, best_quality = [], [], []
    for _, rows in table.groupby("target", sort=False):
        own = rows.loc[rows.sources == "self", "mean_loss"]
        transfers = rows[rows.order >= 1]
        if own.empty or transfers.empty:
            continue
        wins_first.append(bool(own.iloc[0] < transfers.loc[transfers.order == 1, "mean_loss"].min()))
        wins_any.append(bool(own.iloc[0] < transfers.mean_loss.min()))
        best_quality.append(float(transfers.quality.max()))
    share = (lambda xs: round(float(np.mean(xs)), 6) if xs else None)
    return {"gold_standard": {"targets": len(wins_first), "self_beats_first_order": share(wins_first),
                              "self_beats_every_order": share(wins_any), "best_transfer_quality": share(best_quality)}}
