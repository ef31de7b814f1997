"""Uncertainty over readout seeds and test images (issue 25): the intervals, the edge stability, the checks
over seeds, and the params that choose them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_params

from taskonomy.analysis.checks import pass_shares, seed_passes
from taskonomy.analysis.taxonomy import assign_roles
from taskonomy.analysis.uncertainty import (edge_stability, load_resamples, resample_table, resampled_transfers,
                                            save_resamples, target_resamples)
from taskonomy.config import load_params, readout_estimate
from taskonomy.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


def quality_interval(seeded: np.ndarray, own: np.ndarray, rounds: int = 400, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of transfer ``a``'s quality (its win rate against self) from its (S, N) losses."""
    r = target_resamples("t", {"self": own, "a": seeded.mean(0)}, {"a": seeded}, 0.001, rounds, seed)
    j = r.keys.index("a")
    return float(r.low[1, j]), float(r.high[1, j])


def test_interval_over_items_matches_the_binomial_spread():
    """One seed: a transfer that beats self on a fair coin per item; the interval's width is the binomial
    one, 2 x 1.96 x sqrt(p (1 - p) / N), and it holds p."""
    rng = np.random.default_rng(0)
    n = 2000
    own = rng.normal(0, 1, n)
    a = (own + rng.normal(0, 1, n))[None]                     # P(a < self) = 1/2 per item
    low, high = quality_interval(a, own)
    expected = 2 * 1.96 * np.sqrt(0.25 / n)
    assert low < 0.5 < high and 0.75 * expected < high - low < 1.25 * expected


def test_seeds_that_disagree_widen_the_interval_and_seeds_that_agree_do_not():
    rng = np.random.default_rng(1)
    n, offsets = 2000, np.array([-0.5, -0.2, 0.2, 0.5])
    own = rng.normal(0, 1, n)
    noise = rng.normal(0, 1, (4, n))
    agree = own + noise                                          # four trainings, one behaviour
    disagree = own + noise + offsets[:, None]                    # each training shifted: the seed matters
    width = lambda x: np.subtract(*quality_interval(x, own)[::-1])  # noqa: E731
    binomial = 2 * 1.96 * np.sqrt(0.25 / n)
    # averaging four seeds of per-item noise leaves items that almost always agree in sign more often: narrower
    # than one seed's binomial width, never wider; shifted seeds: the seed draw dominates
    assert width(agree) < 1.25 * binomial
    assert width(disagree) > 2.5 * width(agree)


def test_same_seed_same_intervals_other_seed_other_draws():
    rng = np.random.default_rng(2)
    seeded = {k: rng.normal(1, 1, (3, 300)) for k in ("a", "b", "c")}
    losses = {"self": rng.normal(0.8, 1, 300), **{k: v.mean(0) for k, v in seeded.items()}, "pixels": rng.normal(1, 1, 300)}
    first, again = (target_resamples("t", losses, seeded, 0.001, 50, 7) for _ in range(2))
    other = target_resamples("t", losses, seeded, 0.001, 50, 8)
    assert np.array_equal(first.values, again.values, equal_nan=True) and np.array_equal(first.low, again.low, equal_nan=True)
    assert not np.array_equal(first.values, other.values, equal_nan=True)
    # pixels has no affinity (it is no contender) and no gain against itself: undefined stays NaN
    p = first.keys.index("pixels")
    assert np.isnan(first.values[0, :, p]).all() and np.isnan(first.low[0, p])
    assert np.all(first.values[1, :, first.keys.index("self")] == 0.5)    # self against self
    # per resample, the affinities of a target's tournament sum to 1
    assert np.nansum(first.values[0], axis=1) == pytest.approx(np.ones(50))


def test_resamples_round_trip_through_the_file(tmp_path):
    rng = np.random.default_rng(3)
    seeded = {"t": {"a": rng.normal(1, 1, (2, 50)), "b": rng.normal(1.2, 1, (2, 50))}}
    losses = {"t": {"self": rng.normal(0.5, 1, 50), **{k: v.mean(0) for k, v in seeded["t"].items()}}}
    table = resample_table(losses, seeded, 0.001, 20, 0)
    save_resamples(tmp_path / "r.npz", table)
    back = load_resamples(tmp_path / "r.npz")
    keys, values = back["t"]
    assert keys == table["t"].keys and values.shape == (3, 20, 3)
    np.testing.assert_allclose(values, table["t"].values, rtol=1e-6)
    assert {(t.sources, t.target) for t in resampled_transfers(back, 0)} == {(("self",), "t"), (("a",), "t"), (("b",), "t")}


def _resamples(per_target: dict, rounds: int = 100) -> dict:
    losses = {t: {k: v.mean(0) if v.ndim == 2 else v for k, v in per.items()} for t, per in per_target.items()}
    seeded = {t: {k: v for k, v in per.items() if v.ndim == 2} for t, per in per_target.items()}
    table = resample_table(losses, seeded, 0.001, rounds, 0)
    return {t: (r.keys, r.values) for t, r in table.items()}


def test_edge_stability_is_one_on_a_clear_optimum():
    """a serves b and c far better than anything else: at budget 1, a is supervised and both transfers are
    chosen in every resample."""
    rng = np.random.default_rng(4)
    n = 200
    own = {t: rng.normal(0, 0.1, n) for t in "abc"}
    one = lambda x: x[None]                                      # noqa: E731 (one seed)
    per_target = {
        "a": {"self": own["a"], "b": one(own["a"] + 2), "c": one(own["a"] + 2)},
        "b": {"self": own["b"], "a": one(own["b"] - 2), "c": one(own["b"] + 2)},
        "c": {"self": own["c"], "a": one(own["c"] - 2), "b": one(own["c"] + 2)},
    }
    resamples = _resamples(per_target, rounds=30)
    roles = assign_roles(resampled_transfers(resamples, 0))
    rows = edge_stability(resamples, roles, [1], [1], rounds=30)
    shares = {(r["kind"], r["task"], r["sources"]): r["share"] for r in rows}
    assert shares == {("supervised", "a", ""): 1.0, ("edge", "b", "a"): 1.0, ("edge", "c", "a"): 1.0}


def test_edge_stability_is_about_one_half_on_an_exact_tie():
    """Two source-only tasks x and y whose transfers into t tie exactly (y's losses are x's with the items
    swapped in pairs whose self losses are equal): at budget 1 either is supervised, about half the time each."""
    rng = np.random.default_rng(5)
    half = 300
    own = np.tile(rng.normal(0, 1, half), 2)                     # item i and i + half: the same self loss
    x = own + rng.normal(-0.3, 1, 2 * half)
    y = np.concatenate([x[half:], x[:half]])                     # the same values, swapped within the pairs
    resamples = _resamples({"t": {"self": own, "x": x[None], "y": y[None]}}, rounds=200)
    keys, values = resamples["t"]
    assert values[0, 0, keys.index("x")] > 0      # (the point estimates tie exactly: checked below)
    from taskonomy.analysis.affinity import target_scores

    point = target_scores("t", {"self": own, "x": x, "y": y}).set_index("sources")
    assert point.affinity["x"] == pytest.approx(point.affinity["y"], abs=1e-12)
    roles = assign_roles(resampled_transfers(resamples, 0), source_only=["x", "y"])
    rows = edge_stability(resamples, roles, [1], [1], rounds=200)
    shares = {(r["kind"], r["task"], r["sources"]): r["share"] for r in rows}
    assert shares[("edge", "t", "x")] + shares[("edge", "t", "y")] == pytest.approx(1.0)
    assert 0.38 < shares[("edge", "t", "x")] < 0.62
    assert shares[("supervised", "x", "")] == shares[("edge", "t", "x")]


def test_checks_over_seeds_and_resamples():
    """depth <-> distance: firm at every seed; with seeds that disagree on it the pass share falls and the
    per-seed outcomes say which seeds fail."""
    rng = np.random.default_rng(6)
    tasks = ["rgb2depth", "rgb2mist", "edge2d", "reshade", "random"]
    n = 60

    def losses(good_seeds):
        out = {}
        for t in ["rgb2depth", "rgb2mist"]:
            out[t] = {}
            for s in tasks:
                base = 1.0 if s not in ("rgb2depth", "rgb2mist") else 0.2
                rows = [base + rng.normal(0, 0.05, n) for _ in range(3)]
                if s != t and s in ("rgb2depth", "rgb2mist"):
                    rows = [r if k in good_seeds else r + 2 for k, r in enumerate(rows)]
                out[t][s] = np.stack(rows)
        return out

    firm = losses({0, 1, 2})
    assert seed_passes(firm)["depth_mist"] == [True, True, True]
    assert pass_shares(firm, rounds=20)["depth_mist"] == 1.0
    shaky = losses({0})
    assert seed_passes(shaky)["depth_mist"] == [True, False, False]
    assert 0 < pass_shares(shaky, rounds=60)["depth_mist"] < 1


def _params(tmp_path, **sections) -> Path:
    return write_params(tmp_path / "params.yaml", {"tasks": {"rgb2depth": {}, "reshade": {}}, **sections})


@pytest.mark.parametrize("sections, message", [
    ({"transfer": {"seeds": 0}}, "transfer.seeds: must be >= 1"),
    ({"affinity": {"bootstrap": 0}}, "affinity.bootstrap: must be >= 1"),
    ({"taxonomy": {"stability": 0}}, "taxonomy.stability: must be >= 1"),
    ({"affinity": {"bootstrap": 50}, "taxonomy": {"stability": 80}},
     "taxonomy.stability: 80 re-solved resamples, but the affinity stage draws affinity.bootstrap = 50"),
])
def test_bad_counts_are_one_line_naming_the_param(tmp_path, sections, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        load_params(_params(tmp_path, **sections))


def test_more_seeds_than_the_time_allows_warns_with_the_estimate_and_runs(tmp_path):
    params = load_params(ROOT / "params.yaml")
    readouts, minutes = readout_estimate(params)
    assert readouts == params.transfer.seeds * len(params.targets()) * (len(params.sources()) + 10)  # 10: beam 4, order 2-3
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("  seeds: 2 ", "  seeds: 40 "))
    proc = subprocess.run([sys.executable, "-m", "taskonomy", "check-params", str(path), "--stamp",
                           str(tmp_path / "ok.txt")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and (tmp_path / "ok.txt").is_file()
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"{path}: warning: transfer.seeds: 40 seeds make ") and "min of readout training" in line
