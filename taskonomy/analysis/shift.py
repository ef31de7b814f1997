"""The taxonomy under a domain shift: the same readouts scored in two domains, compared (issue 24, part 3).

Input: per-item losses of every target's ``self``, first-order sources and ``pixels`` in the SOURCE domain
(the stored test losses) and in the TARGET domain (the same networks and readouts scored on
``target_test``: taskonomy.transfer.rescore), item i of one domain being item i of the other. Per target:

- the first-order AHP affinities in each domain (:func:`~taskonomy.analysis.affinity.first_order_matrices`:
  AHP over the first-order transfers, t <- t and ``random`` included, each column summing to 1);
- the best source in each, the target itself left out (as the report's top sources:
  :func:`~taskonomy.analysis.checks.ranked_sources`);
- how firm that is against the choice of test images: B PAIRED bootstrap resamples of the target's items
  (one draw of item indices used in both domains), the share of them in which the best source is the
  same in both domains, and the Spearman rank correlation of the target's source affinities (itself
  left out) between the domains with its 95% percentile interval.

And the first-order taxonomy (max order 1) at every budget, solved on each domain's affinity table of
``self`` + first-order transfers (+ ``pixels`` for gain) with the taxonomy stage's machinery
(:func:`~taskonomy.analysis.affinity.affinity_table`, :func:`~taskonomy.analysis.taxonomy.sweep`): which
targets keep their choice (their source, or supervision), which edges (t <- s) and supervised tasks
survive, each with its share over ``taxonomy_rounds`` paired resamples. Both domains use the same
first-order tournament, so the source domain's solutions here can differ from reports/taxonomy's k=1
ones, whose AHP also ranks the higher orders that no target-domain run has.

Readouts are not retrained: the intervals say how the comparison moves with the test images, not with
training seeds. NumPy, pandas and the BIP, no I/O but the figure (:func:`figure`); the stage
(stages/adapt_taxonomy.py) reads the losses and writes the tables.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from taskonomy.analysis.affinity import affinity_table, ahp, first_order_matrices
from taskonomy.analysis.checks import ranked_sources
from taskonomy.analysis.taxonomy import Taxonomy, Transfer, assign_roles, sweep
from taskonomy.errors import DataError
from taskonomy.sources import PIXELS, SELF, order, parse, set_key

Losses = Mapping[str, Mapping[str, np.ndarray]]      # target -> key -> (N_t,) per-item losses
LEVEL = 0.95                                         # percentile intervals
SEED = 0
# Paired resamples behind the taxonomy's shares: each solves the BIP at every budget in both domains
# (2 x 8 CBC solves: 0.26 s a resample on two busy cores with the committed run's loss structure, 0.7 s
# with random losses), so adapt.bootstrap's 1,000 would take 4-12 minutes; 100 is what the known-structure
# checks use for theirs (checks.rounds). The best sources and rank correlations (7 s for 1,000 resamples
# of 26 sources x 22 targets) use adapt.bootstrap.
TAXONOMY_ROUNDS = 100


def interval(draws: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap ``draws`` (NaN draws left out; NaN if none is left)."""
    draws = np.asarray(draws, dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if not draws.size:
        return math.nan, math.nan
    lo, hi = np.percentile(draws, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return float(lo), float(hi)


def item_draws(target: str, n: int, rounds: int, seed: int = SEED) -> np.ndarray:
    """(rounds, n) item indices drawn with replacement: one bootstrap resample of ``target``'s n items
    per row, from a stream of its own (adding a target leaves the others' draws alone)."""
    return np.random.default_rng([seed, zlib.crc32(target.encode())]).integers(0, n, size=(rounds, n))


def check_paired(source: Losses, target: Losses) -> None:
    """Both domains have the same targets, keys and items per target; else a DataError naming them."""
    if list(source) != list(target):
        raise DataError(f"the domains have other targets: {list(source)} vs {list(target)}")
    for t in source:
        if set(source[t]) != set(target[t]):
            raise DataError(f"target {t}: the domains have other sources: {sorted(set(source[t]) ^ set(target[t]))}")
        for key, a in source[t].items():
            if len(a) != len(target[t][key]):
                raise DataError(f"target {t}, {key}: {len(a)} items in the source domain, "
                                f"{len(target[t][key])} in the target domain (items must be paired)")


def first_order_only(losses: Losses) -> dict[str, dict[str, np.ndarray]]:
    """The first-order keys of every target (no ``self``, ``pixels`` or higher orders)."""
    return {t: {k: np.asarray(v, dtype=np.float64) for k, v in per.items() if order(k) == 1}
            for t, per in losses.items()}


def bootstrap_affinities(stacked: np.ndarray, draws: np.ndarray, clip: float) -> np.ndarray:
    """First-order AHP affinities on every resample: (K, N) losses, (B, N) item draws -> (B, K).

    Resample b's win rates are ``W_b[i, j] = (1/N) Σ_n c_bn 1[L_i(n) < L_j(n)]`` with c_bn the times item
    n was drawn: exactly :func:`~taskonomy.analysis.affinity.win_rates` of the resampled losses (integer
    counts), computed for all B at once; AHP is then :func:`~taskonomy.analysis.affinity.ahp` per resample.
    """
    k, n = stacked.shape
    b = draws.shape[0]
    counts = np.bincount((draws + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n)  # (B, N)
    beats = (stacked[:, None, :] < stacked[None, :, :]).reshape(k * k, n)                               # (K*K, N)
    wins = (counts.astype(np.float64) @ beats.T.astype(np.float64)).reshape(b, k, k) / n               # (B, K, K)
    wins[:, np.arange(k), np.arange(k)] = 0.5
    return np.stack([ahp(w, clip) for w in wins])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two rankings (``scipy.stats.spearmanr``); NaN where one is constant (no ranking)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`spearman` of every row pair of (B, K) ``a`` and ``b`` at once: the Pearson correlation of
    their average ranks, which is what ``spearmanr`` computes (one call per resample cost 4 s of 1,000
    resamples x 22 targets); NaN for a constant row."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)       # (B, K) average ranks
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    return np.divide((ra * rb).sum(axis=1), den, out=np.full(len(den), np.nan), where=den > 0)


@dataclass(frozen=True)
class BestSource:
    """One target's first-order sources in the two domains."""
    target: str
    source_best: str
    source_affinity: float
    target_best: str
    target_affinity: float
    unchanged_share: float        # share of paired resamples with the same best source in both domains
    rho: float                    # Spearman rho of the source affinities (the target itself left out)
    rho_lo: float
    rho_hi: float
    rho_draws: np.ndarray = field(repr=False, compare=False)   # (B,) per resample

    @property
    def unchanged(self) -> bool:
        return self.source_best == self.target_best


def best_sources(source: Losses, target: Losses, *, clip: float = 0.001, rounds: int = 1000,
                 seed: int = SEED) -> tuple[list[BestSource], pd.DataFrame, pd.DataFrame]:
    """Per target: best first-order source in each domain, the paired-bootstrap share in which it is
    unchanged and the Spearman rho of the source affinities with its interval (module docstring).

    Returns the rows and the two first-order affinity matrices (sources x targets; source, target domain).
    """
    check_paired(source, target)
    first_s, first_t = first_order_only(source), first_order_only(target)
    sources = list(next(iter(first_s.values())))
    _, aff_s = first_order_matrices(first_s, clip, sources)
    _, aff_t = first_order_matrices(first_t, clip, sources)
    rows = []
    for t in first_s:
        keys = list(first_s[t])
        others = [i for i, k in enumerate(keys) if k != t]         # the target itself is no source of its own
        stacked_s = np.stack([first_s[t][k] for k in keys])        # (K, N)
        stacked_t = np.stack([first_t[t][k] for k in keys])
        draws = item_draws(t, stacked_s.shape[1], rounds, seed)
        boot_s = bootstrap_affinities(stacked_s, draws, clip)[:, others]   # (B, K-1)
        boot_t = bootstrap_affinities(stacked_t, draws, clip)[:, others]
        same = np.argmax(boot_s, axis=1) == np.argmax(boot_t, axis=1)
        rho_draws = spearman_rows(boot_s, boot_t)
        best_s, best_t = ranked_sources(aff_s, t)[0], ranked_sources(aff_t, t)[0]
        named = [keys[i] for i in others]
        rho = spearman(aff_s.loc[named, t].to_numpy(), aff_t.loc[named, t].to_numpy())
        rows.append(BestSource(t, best_s, float(aff_s.at[best_s, t]), best_t, float(aff_t.at[best_t, t]),
                               float(same.mean()), rho, *interval(rho_draws), rho_draws))
    return rows, aff_s, aff_t


# --------------------------------------------------------------------------------------------------
# The first-order taxonomy in both domains
# --------------------------------------------------------------------------------------------------

def first_order_transfers(losses: Losses, clip: float = 0.001) -> list[Transfer]:
    """The BIP's transfers from ``self`` + first-order losses (+ ``pixels`` for gain): the affinity
    table's rows (:func:`~taskonomy.analysis.affinity.affinity_table`), ``pixels`` left out as
    :func:`~taskonomy.analysis.tables.load_table` leaves it out."""
    table = affinity_table({t: {k: v for k, v in per.items() if order(k) <= 1} for t, per in losses.items()}, clip)
    return [Transfer(parse(r.sources), r.target, float(r.affinity), float(r.quality), float(r.gain))
            for r in table.itertuples(index=False) if r.sources != PIXELS]


def solve_first_order(losses: Losses, source_only: Sequence[str], budgets: Sequence[float], *, clip: float = 0.001,
                      objective: str = "affinity", sqrt: bool = True, target_only: Sequence[str] = ()) -> list[Taxonomy]:
    """The first-order taxonomy (max order 1) at every budget, as stage taxonomy solves it (``target_only``:
    the novel tasks, never supervised)."""
    transfers = first_order_transfers(losses, clip)
    roles = assign_roles(transfers, source_only=[s for s in source_only if any(s in tr.sources for tr in transfers)],
                         target_only=[t for t in target_only if t in losses])
    return sweep(transfers, roles, budgets, [1], objective=objective, sqrt=sqrt)


def choices(result: Taxonomy) -> dict[str, str]:
    """How each wanted task is solved: ``self`` (supervised) or its source set's key; {} if not optimal."""
    if not result.optimal:
        return {}
    return {t: set_key(c.sources) for t, c in result.choices.items()}


def edges(result: Taxonomy) -> set[tuple[str, str]]:
    """(target, source) of every chosen transfer."""
    return {(t, s) for t, srcs in result.transfers.items() for s in srcs} if result.optimal else set()


def kept(before: set, after: set) -> float:
    """Share of ``before`` also in ``after`` (NaN for an empty ``before``)."""
    return len(before & after) / len(before) if before else math.nan


@dataclass(frozen=True)
class BudgetShift:
    """The first-order taxonomy at one budget in both domains, and how firm the comparison is."""
    budget: float
    source: Taxonomy
    target: Taxonomy
    choice_kept: dict[str, float]                # target -> share of resamples with one choice in both domains
    edges_kept_draws: np.ndarray = field(repr=False, compare=False)        # (R,) per resample
    supervised_kept_draws: np.ndarray = field(repr=False, compare=False)   # (R,)

    @property
    def edges_kept(self) -> float:
        return kept(edges(self.source), edges(self.target))

    @property
    def supervised_kept(self) -> float:
        return kept(set(self.source.supervised), set(self.target.supervised)) if self.both_solved else math.nan

    @property
    def both_solved(self) -> bool:
        return self.source.optimal and self.target.optimal


def resample(losses: Losses, draws: Mapping[str, np.ndarray], r: int) -> dict[str, dict[str, np.ndarray]]:
    """Every target's losses on its ``r``-th row of item draws."""
    return {t: {k: np.asarray(v)[draws[t][r]] for k, v in per.items()} for t, per in losses.items()}


def taxonomy_shift(source: Losses, target: Losses, source_only: Sequence[str], budgets: Sequence[float], *,
                   clip: float = 0.001, objective: str = "affinity", sqrt: bool = True, rounds: int = 100,
                   seed: int = SEED, target_only: Sequence[str] = ()) -> list[BudgetShift]:
    """The first-order taxonomy at every budget in both domains; over ``rounds`` paired resamples of
    every target's items, the share in which each target keeps its choice, and per resample the shares
    of edges and supervised tasks of the source domain's solution kept in the target domain's."""
    check_paired(source, target)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")

    def solve(losses: Losses) -> list[Taxonomy]:
        return solve_first_order(losses, source_only, budgets, clip=clip, objective=objective, sqrt=sqrt,
                                 target_only=target_only)

    point_s, point_t = solve(source), solve(target)
    draws = {t: item_draws(t, len(per[SELF]), rounds, seed + 1) for t, per in source.items()}
    same = np.zeros((len(budgets), len(source), rounds), dtype=bool)    # (budgets, targets, R)
    edge_share = np.full((len(budgets), rounds), np.nan)
    supervised_share = np.full((len(budgets), rounds), np.nan)
    for r in range(rounds):
        for i, (a, b) in enumerate(zip(solve(resample(source, draws, r)), solve(resample(target, draws, r)))):
            ca, cb = choices(a), choices(b)
            same[i, :, r] = [bool(ca) and ca.get(t) == cb.get(t) for t in source]
            if a.optimal and b.optimal:
                edge_share[i, r] = kept(edges(a), edges(b))
                supervised_share[i, r] = kept(set(a.supervised), set(b.supervised))
    return [BudgetShift(float(budget), point_s[i], point_t[i],
                        {t: float(same[i, j].mean()) for j, t in enumerate(source)}, edge_share[i], supervised_share[i])
            for i, budget in enumerate(budgets)]


# --------------------------------------------------------------------------------------------------
# Tables, metrics and findings (plain data for the stage to write)
# --------------------------------------------------------------------------------------------------

BEST_FIELDS = ["target", "source_domain_best", "source_domain_affinity", "target_domain_best",
               "target_domain_affinity", "unchanged", "unchanged_share", "spearman_rho", "rho_lo", "rho_hi"]
EDGE_FIELDS = ["budget", "target", "source_domain", "target_domain", "survives", "survives_share"]
SUPERVISED_FIELDS = ["budget", "source_domain", "target_domain", "kept", "dropped", "added"]


def best_rows(rows: Sequence[BestSource]) -> list[dict]:
    return [{"target": r.target, "source_domain_best": r.source_best, "source_domain_affinity": r.source_affinity,
             "target_domain_best": r.target_best, "target_domain_affinity": r.target_affinity,
             "unchanged": int(r.unchanged), "unchanged_share": r.unchanged_share, "spearman_rho": r.rho,
             "rho_lo": r.rho_lo, "rho_hi": r.rho_hi} for r in rows]


def edge_rows(shifts: Sequence[BudgetShift]) -> list[dict]:
    """Per budget and target: its source set (or ``self``) in each domain; survives = the same."""
    out = []
    for s in shifts:
        ca, cb = choices(s.source), choices(s.target)
        for t, share in s.choice_kept.items():
            out.append({"budget": f"{s.budget:g}", "target": t, "source_domain": ca.get(t, ""),
                        "target_domain": cb.get(t, ""),
                        "survives": int(ca.get(t) == cb.get(t)) if s.both_solved else "", "survives_share": share})
    return out


def supervised_rows(shifts: Sequence[BudgetShift]) -> list[dict]:
    join = lambda names: " ".join(names)  # noqa: E731
    out = []
    for s in shifts:
        a, b = s.source.supervised, s.target.supervised
        out.append({"budget": f"{s.budget:g}", "source_domain": join(a), "target_domain": join(b),
                    "kept": join(x for x in a if x in b), "dropped": join(x for x in a if x not in b),
                    "added": join(x for x in b if x not in a)})
    return out


def _r(x: float, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def mean_rho(rows: Sequence[BestSource]) -> tuple[float, float, float]:
    """The mean rho over targets and its interval: resample b of every target averaged (the targets'
    draws are independent, so that is a bootstrap draw of the mean)."""
    draws = np.nanmean(np.stack([r.rho_draws for r in rows]), axis=0) if rows else np.array([])
    rhos = [r.rho for r in rows if math.isfinite(r.rho)]
    return (float(np.mean(rhos)) if rhos else math.nan), *interval(draws)


def metrics(rows: Sequence[BestSource], shifts: Sequence[BudgetShift], rounds: int, taxonomy_rounds: int) -> dict:
    """For ``dvc metrics show``: best sources unchanged, mean rho with its interval, and per budget the
    shares of the source domain's edges and supervised tasks kept, with intervals."""
    rho, lo, hi = mean_rho(rows)
    out = {"targets": len(rows), "rounds": rounds, "taxonomy_rounds": taxonomy_rounds,
           "best_unchanged": _r(np.mean([r.unchanged for r in rows])) if rows else None,
           "best_unchanged_share": _r(np.mean([r.unchanged_share for r in rows])) if rows else None,
           "rho_mean": _r(rho), "rho_mean_lo": _r(lo), "rho_mean_hi": _r(hi), "taxonomy": {}}
    for s in shifts:
        e_lo, e_hi = interval(s.edges_kept_draws)
        s_lo, s_hi = interval(s.supervised_kept_draws)
        out["taxonomy"][f"b{s.budget:g}"] = {
            "edges_kept": _r(s.edges_kept), "edges_kept_lo": _r(e_lo), "edges_kept_hi": _r(e_hi),
            "supervised_kept": _r(s.supervised_kept), "supervised_kept_lo": _r(s_lo), "supervised_kept_hi": _r(s_hi),
            "choices_kept": _r(np.mean([choices(s.source).get(t) == choices(s.target).get(t) for t in s.choice_kept]))
            if s.both_solved else None}
    return out


def headline(numbers: dict) -> dict:
    """The headline of :func:`metrics` for ``dvc metrics`` / ``dvc exp show`` (reports/metrics/adapt_taxonomy.json):
    best sources unchanged (share of targets, and mean share of resamples) and the mean rho with its interval."""
    keys = ("best_unchanged", "best_unchanged_share", "rho_mean", "rho_mean_lo", "rho_mean_hi")
    return {"adapt_taxonomy": {k: numbers[k] for k in keys}}


def _span(x: float, lo: float, hi: float) -> str:
    return f"{x:.2f} [{lo:.2f}, {hi:.2f}]"


def findings(rows: Sequence[BestSource], shifts: Sequence[BudgetShift], rounds: int,
             taxonomy_rounds: int) -> dict[str, str]:
    """Plain sentences for the report: best sources, rank agreement, taxonomy edges (numbers with their
    95% intervals over paired resamples of the test images)."""
    out = {}
    changed = [r for r in rows if not r.unchanged]
    rho, lo, hi = mean_rho(rows)
    said = (f"Under the shift the best first-order source of {len(rows) - len(changed)} of {len(rows)} targets is "
            f"unchanged; on average over targets it is unchanged in {np.mean([r.unchanged_share for r in rows]):.2f} "
            f"of {rounds} paired bootstrap resamples of the test images. The targets' source rankings agree with "
            f"a mean Spearman rho of {_span(rho, lo, hi)}.")
    if changed:
        firm = sorted(changed, key=lambda r: r.unchanged_share)
        said += " Changed: " + "; ".join(
            f"{r.target} {r.source_best} -> {r.target_best} (unchanged in {r.unchanged_share:.2f} of resamples, "
            f"rho {_span(r.rho, r.rho_lo, r.rho_hi)})" for r in firm) + "."
    out["best_sources"] = said
    parts = []
    for s in shifts:
        if not s.both_solved:
            domain = "source" if not s.source.optimal else "target"
            parts.append(f"budget {s.budget:g}: no taxonomy in the {domain} domain")
            continue
        n_edges = len(edges(s.source))
        e_lo, e_hi = interval(s.edges_kept_draws)
        s_lo, s_hi = interval(s.supervised_kept_draws)
        kept_edges = len(edges(s.source) & edges(s.target))
        parts.append(f"budget {s.budget:g}: {kept_edges} of {n_edges} edges kept"
                     + (f" ({_span(s.edges_kept, e_lo, e_hi)})" if n_edges else "")
                     + f", supervised {len(set(s.source.supervised) & set(s.target.supervised))} of "
                       f"{len(s.source.supervised)} kept ({_span(s.supervised_kept, s_lo, s_hi)})")
    out["taxonomy"] = (f"First-order taxonomy, target domain against source domain (shares over {taxonomy_rounds} "
                       "paired resamples in brackets): " + "; ".join(parts) + ".")
    return out


def figure(aff_source: pd.DataFrame, aff_target: pd.DataFrame, rows: Sequence[BestSource], path) -> None:
    """Source- and target-domain first-order affinities as heatmaps on one colour scale (each target's
    best source ringed) and a scatter of one against the other (identity dashed)."""
    from taskonomy.plotting import pyplot, save_figure

    plt = pyplot()
    n_src, n_tgt = aff_source.shape
    fig, axes = plt.subplots(1, 3, figsize=(2 * (2.5 + 0.32 * n_tgt) + 4.2, 2.0 + 0.3 * n_src),
                             gridspec_kw={"width_ratios": [1, 1, 0.9]}, constrained_layout=True)
    vmax = float(np.nanmax([aff_source.to_numpy(dtype=float), aff_target.to_numpy(dtype=float)]))
    best = {"source": [r.source_best for r in rows], "target": [r.target_best for r in rows]}
    for ax, (matrix, domain) in zip(axes, ((aff_source, "source"), (aff_target, "target"))):
        im = ax.imshow(matrix.to_numpy(dtype=float), cmap="magma", aspect="auto", vmin=0, vmax=vmax)
        cols = list(matrix.columns)
        ax.scatter([cols.index(r.target) for r in rows], [list(matrix.index).index(b) for b in best[domain]],
                   s=30, facecolors="none", edgecolors="cyan", linewidths=1.2)
        ax.set_xticks(range(n_tgt), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(n_src), matrix.index, fontsize=7)
        ax.set_xlabel("target"), ax.set_ylabel("source")
        ax.set_title(f"{domain} domain: first-order affinity\n(columns sum to 1; ring: best source)", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[2]
    a, b = aff_source.to_numpy(dtype=float).ravel(), aff_target.to_numpy(dtype=float).ravel()
    ax.scatter(a, b, s=8, alpha=0.6)
    ax.plot([0, vmax], [0, vmax], "k--", lw=0.8)
    ax.set_xlabel("source-domain affinity"), ax.set_ylabel("target-domain affinity")
    ax.set_title("every (source, target) pair", fontsize=9)
    save_figure(fig, path, dpi=120)
