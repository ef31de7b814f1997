"""Known-structure checks: what the synthetic bank's generator implies about first-order affinities.

The bank is rendered from scenes whose labels are known functions of each other
(design/synthetic-task-bank.md, "Known structure"): depth and distance, normals and shading, the
2D gradient tasks, the semantic tasks, room layout and vanishing points. A correct pipeline must
find these ties as ranks of sources in the first-order affinity matrix (rows: sources, columns:
targets, higher = better; reports/affinity/first_order_affinities.csv).

The expectations are data (:data:`EXPECTATIONS`, one place); :func:`check_structure` is pure: it
evaluates each one on an affinity matrix and returns expected / found / pass-fail. A target is never
ranked as its own source. An expectation whose tasks are not all in the matrix is reported ``n/a``.

Rules (``Expectation.rule``):

- ``in_top_k``: for every target t and source s != t listed, s is among the top ``k`` sources of t;
- ``prefer_group``: for every target, its best source in ``sources`` outranks every source in ``others``;
- ``share_sources``: every pair of targets has a source in common among their top ``k``;
- ``group_mean``: over the targets, the mean affinity from ``sources`` exceeds that from ``others``;
- ``near_last``: the one source in ``sources`` ranks among the last ``k`` sources for at least
  ``min_share`` of the targets (``targets`` empty: every target column not listed in ``others``).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Task groups of the bank's task table (synthetic-task-bank.md "Tasks"); used by the checks only.
GROUP_3D = ("rgb2depth", "rgb2mist", "rgb2sfnorm", "reshade", "curvature", "edge3d", "keypoint3d", "segment25d")
GROUP_2D = ("edge2d", "keypoint2d", "segment2d", "autoencoder", "denoise", "inpainting", "colorization")
# Targets a random encoder serves well: the image itself survives a random convolution.
RECONSTRUCTION = ("autoencoder", "denoise", "inpainting", "colorization")

RULES = ("in_top_k", "prefer_group", "share_sources", "group_mean", "near_last")
PASS, FAIL, NA = "pass", "fail", "n/a"


@dataclass(frozen=True)
class Expectation:
    """One expectation about first-order affinities (see the module docstring for the rules)."""
    name: str
    claim: str                     # why the generator implies it
    rule: str
    targets: tuple[str, ...]
    sources: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    k: int = 3
    min_share: float = 1.0

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"{self.name}: unknown rule {self.rule!r} (known: {', '.join(RULES)})")


EXPECTATIONS: tuple[Expectation, ...] = (
    Expectation("depth_mist", "z-buffer depth and Euclidean distance are near-deterministic functions of each other",
                "in_top_k", ("rgb2depth", "rgb2mist"), ("rgb2depth", "rgb2mist"), k=3),
    Expectation("normals_shading", "normals and reshading are tied through the shading equation; curvature "
                "follows from normals", "in_top_k", ("reshade", "curvature"), ("rgb2sfnorm",), k=5),
    Expectation("gradients_2d", "texture edges, 2D keypoints and the 2D segmentation all come from image gradients",
                "prefer_group", ("edge2d", "keypoint2d", "segment2d"), ("edge2d", "keypoint2d", "segment2d"),
                others=GROUP_3D),
    Expectation("semantic_share", "semantic segmentation, object classes and scene type share the object layout",
                "share_sources", ("segmentsemantic", "class_object", "class_scene"), k=5),
    Expectation("layout_vanishing", "room layout and vanishing points are both functions of the camera rotation "
                "in the room", "in_top_k", ("room_layout", "vanishing_point"), ("room_layout", "vanishing_point"), k=3),
    Expectation("3d_prefers_3d", "3D labels are functions of the geometry", "group_mean", GROUP_3D, GROUP_3D,
                others=GROUP_2D),
    Expectation("2d_prefers_2d", "2D labels are functions of the image", "group_mean", GROUP_2D, GROUP_2D,
                others=GROUP_3D),
    Expectation("random_last", "a random encoder knows nothing beyond the pixels (reconstruction targets excepted)",
                "near_last", (), ("random",), others=RECONSTRUCTION, k=5, min_share=0.75),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    claim: str
    expected: str
    found: str
    status: str  # PASS, FAIL or NA


def ranked_sources(affinities: pd.DataFrame, target: str) -> list[str]:
    """Sources of ``target`` best first (highest affinity), the target itself left out."""
    col = affinities[target].drop(labels=[target], errors="ignore").dropna()
    return list(col.sort_values(ascending=False, kind="stable").index)


def _in_top_k(a: pd.DataFrame, e: Expectation) -> tuple[str, str, bool]:
    pairs = [(t, s) for t in e.targets for s in e.sources if s != t]
    found, ok = [], True
    for t, s in pairs:
        rank = ranked_sources(a, t).index(s) + 1
        ok &= rank <= e.k
        found.append(f"{s} is #{rank} for {t}")
    expected = "; ".join(f"{s} in the top {e.k} sources of {t}" for t, s in pairs)
    return expected, "; ".join(found), ok


def _prefer_group(a: pd.DataFrame, e: Expectation) -> tuple[str, str, bool]:
    found, ok = [], True
    for t in e.targets:
        ranks = ranked_sources(a, t)
        own = min(ranks.index(s) + 1 for s in e.sources if s != t)
        other = min(ranks.index(s) + 1 for s in e.others if s != t)
        ok &= own < other
        found.append(f"{t}: best own #{own}, best other #{other}")
    expected = (f"for each of {', '.join(e.targets)}: its best source among the others of the group outranks "
                f"every source of {', '.join(e.others)}")
    return expected, "; ".join(found), ok


def _share_sources(a: pd.DataFrame, e: Expectation) -> tuple[str, str, bool]:
    top = {t: set(ranked_sources(a, t)[:e.k]) for t in e.targets}
    found, ok = [], True
    for t, u in itertools.combinations(e.targets, 2):
        common = sorted(top[t] & top[u])
        ok &= bool(common)
        found.append(f"{t} & {u}: {', '.join(common) or 'none'}")
    expected = f"every pair of {', '.join(e.targets)} shares a source among its top {e.k}"
    return expected, "; ".join(found), ok


def _group_mean(a: pd.DataFrame, e: Expectation) -> tuple[str, str, bool]:
    own, other = [], []
    targets = _targets(e, a.columns)
    for t in targets:
        col = a[t]
        own.append(col[[s for s in e.sources if s != t]].mean())
        other.append(col[[s for s in e.others if s != t]].mean())
    m_own, m_other = float(np.mean(own)), float(np.mean(other))
    expected = f"mean affinity into {len(targets)} targets: from {len(e.sources)} group sources > from {len(e.others)} others"
    return expected, f"{m_own:.4f} vs {m_other:.4f}", m_own > m_other


def _near_last(a: pd.DataFrame, e: Expectation) -> tuple[str, str, bool]:
    (source,) = e.sources
    targets = _targets(e, list(a.columns))
    late = []
    for t in targets:
        ranks = ranked_sources(a, t)
        if ranks.index(source) >= len(ranks) - e.k:
            late.append(t)
    share = len(late) / len(targets)
    expected = f"{source} among the last {e.k} sources for >= {e.min_share:.0%} of the targets"
    return expected, f"{len(late)}/{len(targets)} targets ({share:.0%})", share >= e.min_share


_RULES = {"in_top_k": _in_top_k, "prefer_group": _prefer_group, "share_sources": _share_sources,
          "group_mean": _group_mean, "near_last": _near_last}


def _missing(e: Expectation, sources: set[str], targets: set[str]) -> list[str]:
    """Tasks the expectation needs but the matrix lacks. ``group_mean`` and ``near_last`` average over
    the listed targets present (source-only tasks have no column), so one present target is enough."""
    missing = {s for s in set(e.sources) | set(e.others) if s not in sources}
    if e.rule == "near_last":
        return sorted({s for s in e.sources if s not in sources}
                      | ({"a target"} if not _targets(e, targets) else set()))
    if e.rule == "group_mean":
        return sorted(missing | ({"a target of " + e.name} if not _targets(e, targets) else set()))
    return sorted(missing | {t for t in e.targets if t not in targets})


def _targets(e: Expectation, columns) -> list[str]:
    """The expectation's targets present as columns (``near_last``: all columns not in ``others``)."""
    if e.rule == "near_last":
        return [t for t in (e.targets or columns) if t in columns and t not in e.others and t not in e.sources]
    return [t for t in e.targets if t in columns]


def check_structure(affinities: pd.DataFrame,
                    expectations: tuple[Expectation, ...] = EXPECTATIONS) -> list[CheckResult]:
    """Evaluate each expectation on a first-order affinity matrix (rows sources, columns targets)."""
    sources, targets = set(affinities.index), set(affinities.columns)
    results = []
    for e in expectations:
        missing = _missing(e, sources, targets)
        if missing:
            results.append(CheckResult(e.name, e.claim, "", f"not in the run: {', '.join(missing)}", NA))
            continue
        expected, found, ok = _RULES[e.rule](affinities, e)
        results.append(CheckResult(e.name, e.claim, expected, found, PASS if ok else FAIL))
    return results


def _per_seed(losses: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """target -> source -> (S, N): per-seed losses as given, or one seed for (N,) arrays."""
    return {t: {s: np.atleast_2d(np.asarray(a, dtype=np.float64)) for s, a in per.items()} for t, per in losses.items()}


def seed_passes(losses: Mapping[str, Mapping[str, np.ndarray]], clip: float = 0.001,
                expectations: tuple[Expectation, ...] = EXPECTATIONS) -> dict[str, list[bool]]:
    """Each check's outcome on each readout seed alone: name -> [passed at seed 0, seed 1, ...].

    Args:
        losses: target -> first-order source -> (S, N) per-seed, per-item test losses (``seed_losses.npz``;
            (N,) arrays count as one seed). n/a checks are left out.
    """
    from taskonomy.analysis.affinity import first_order_matrices

    seeded = _per_seed(losses)
    n_seeds = min(a.shape[0] for per in seeded.values() for a in per.values())
    out: dict[str, list[bool]] = {}
    for k in range(n_seeds):
        _, affinities = first_order_matrices({t: {s: a[k] for s, a in per.items()} for t, per in seeded.items()}, clip)
        for result in check_structure(affinities, expectations):
            if result.status != NA:
                out.setdefault(result.name, []).append(result.status == PASS)
    return out


def pass_shares(losses: Mapping[str, Mapping[str, np.ndarray]], clip: float = 0.001, rounds: int = 100,
                seed: int = 0, expectations: tuple[Expectation, ...] = EXPECTATIONS) -> dict[str, float]:
    """How firm each check's outcome is against retraining the readouts and the choice of test images: the
    share of ``rounds`` resamples in which the expectation passes on the first-order affinities recomputed
    from them. Per target and round, its readout seeds and its test items are drawn with replacement (one
    draw shared by its sources: common random numbers) and the drawn seeds' losses averaged, as the
    affinity stage's intervals resample them (taskonomy.analysis.uncertainty).

    Args:
        losses: target -> first-order source -> (S, N) per-seed losses, or (N,) for one seed (then only the
            test images are resampled, and the share is silent about retraining).
    Returns:
        expectation name -> share in [0, 1]; expectations ``n/a`` on these tasks are left out.
    """
    from taskonomy.analysis.affinity import first_order_matrices
    from taskonomy.analysis.uncertainty import target_rng

    seeded = _per_seed(losses)
    rngs = {t: target_rng(seed, t) for t in seeded}
    passed: dict[str, int] = {}
    for _ in range(rounds):
        resampled = {}
        for target, per_source in seeded.items():
            n_seeds, n_items = next(iter(per_source.values())).shape
            seeds, items = rngs[target].integers(0, n_seeds, n_seeds), rngs[target].integers(0, n_items, n_items)
            resampled[target] = {s: a[seeds][:, items].mean(0) for s, a in per_source.items()}
        _, affinities = first_order_matrices(resampled, clip)
        for result in check_structure(affinities, expectations):
            if result.status != NA:
                passed[result.name] = passed.get(result.name, 0) + (result.status == PASS)
    return {name: count / rounds for name, count in passed.items()}


def run_checks(affinities: pd.DataFrame, losses: Mapping[str, Mapping[str, np.ndarray]], clip: float = 0.001,
               rounds: int = 100, seed: int = 0) -> dict:
    """Every check on the first-order ``affinities`` (of the seeds' mean losses), its outcome at each readout
    seed (:func:`seed_passes`) and its pass share over resamples of the seeds and test images
    (:func:`pass_shares`), as plain data: ``{"rounds", "seeds", "passed", "evaluated", "checks": [{name,
    claim, expected, found, status, seed_passes, seed_pass_rate, pass_share}]}`` (None where n/a).
    ``losses``: target -> first-order source -> (S, N) per-seed losses (or (N,): one seed)."""
    results = check_structure(affinities)
    shares = pass_shares(losses, clip, rounds=rounds, seed=seed)
    per_seed = seed_passes(losses, clip)
    n_seeds = max((len(v) for v in per_seed.values()), default=0)
    return {"rounds": rounds, "seeds": n_seeds, "passed": sum(r.status == PASS for r in results),
            "evaluated": sum(r.status != NA for r in results),
            "checks": [{"name": r.name, "claim": r.claim, "expected": r.expected, "found": r.found, "status": r.status,
                        "seed_passes": per_seed.get(r.name),
                        "seed_pass_rate": float(np.mean(per_seed[r.name])) if r.name in per_seed else None,
                        "pass_share": shares.get(r.name)} for r in results]}


def metrics(result: dict) -> dict:
    """The numbers of :func:`run_checks` for ``dvc metrics`` (reports/metrics/checks.json): checks passed,
    evaluated, and each evaluated check's pass rate over the readout seeds and pass share over the
    resamples of seeds and test images (n/a checks left out)."""
    evaluated = [c for c in result["checks"] if c["status"] != NA]
    return {"checks": {"passed": result["passed"], "evaluated": result["evaluated"], "seeds": result["seeds"],
                       "seed_pass_rate": {c["name"]: c["seed_pass_rate"] for c in evaluated},
                       "pass_share": {c["name"]: c["pass_share"] for c in evaluated}}}
