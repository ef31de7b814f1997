"""The taxonomy BIP (taskonomy.analysis.taxonomy): brute force on the published 16k data and on random small
instances, every constraint of reference §5.1, roles, costs, values, objectives."""
from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskonomy.analysis.tables import load_published
from taskonomy.analysis.taxonomy import (Roles, TaxonomyError, Transfer, assign_roles, build_problem, require_optimal,
                                solve, solve_highs, sweep)

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "taskonomy-2018"


@pytest.fixture(scope="module")
def published16k():
    path = PUBLISHED / "affinities" / "all_affinities_16k.pkl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    transfers, _ = load_published(path)
    return transfers


def check_constraints(result, problem):
    """Every constraint of §5.1 holds for a solved taxonomy, and its objective is Σ c."""
    roles = problem.roles
    sup = set(result.supervised)
    assert sup <= set(roles.supervisable)
    edges = {(frozenset(e.transfer.sources), e.transfer.target): e for e in problem.edges}
    value = sum(problem.supervise_value[s] for s in sup)
    cost = sum(problem.supervise_cost[s] for s in sup)
    for target, sources in result.transfers.items():
        e = edges[(frozenset(sources), target)]                    # a viable edge
        assert set(sources) <= sup                                 # (I)
        assert target not in sup and target not in sources
        assert len(sources) <= problem.max_order
        assert not set(sources) & (set(roles.target_only) | set(roles.unused) | {"self"})
        value += e.value
        cost += e.cost
    for t in roles.targets:                                        # (II)
        assert (t in sup) + (t in result.transfers) == 1
    for t in roles.target_only:
        assert t in result.transfers and t not in sup
    assert not set(result.transfers) & (set(roles.source_only) | set(roles.unused))
    assert cost <= problem.budget + 1e-9                           # (III)
    assert result.cost == pytest.approx(cost)
    assert result.objective == pytest.approx(value, abs=1e-9)


def brute_force_sets(problem, max_size):
    """Best objective for every budget 0..max_size (unit costs, no transfer costs) by enumerating
    every supervised set S with |S| <= max_size: supervised targets score c_t, every other target
    the best edge whose sources lie in S (none: S is infeasible)."""
    sup = list(problem.supervisable)
    bit = {s: 1 << i for i, s in enumerate(sup)}
    wanted = list(problem.roles.targets) + list(problem.roles.target_only)
    slot = {t: i for i, t in enumerate(wanted)}
    masks = np.array([sum(bit[s] for s in e.transfer.sources) for e in problem.edges], dtype=np.int64)
    values = np.array([e.value for e in problem.edges])
    dst = np.array([slot[e.transfer.target] for e in problem.edges])
    self_value = np.array([problem.supervise_value.get(t, 0.0) for t in wanted])
    is_target = np.array([t in problem.roles.targets for t in wanted])
    best = np.full(max_size + 1, -np.inf)
    for size in range(max_size + 1):
        for combo in combinations(range(len(sup)), size):
            s_mask = sum(1 << i for i in combo)
            ok = (masks & ~s_mask) == 0
            per_target = np.full(len(wanted), -np.inf)
            np.maximum.at(per_target, dst[ok], values[ok])
            supervised = np.array([t in bit and bool(bit[t] & s_mask) for t in wanted]) & is_target
            total = np.where(supervised, self_value, per_target).sum() + 0.0
            best[size] = max(best[size], total)
    return np.maximum.accumulate(best)  # budget b allows any |S| <= b


@pytest.mark.parametrize("max_order", [1, 5])
def test_published16k_matches_brute_force(published16k, max_order):
    roles = assign_roles(published16k)
    assert set(roles.source_only) == {"colorization", "jigsaw", "impainting_whole", "random", "class_selected"}
    assert len(roles.targets) == 22
    problem = build_problem(published16k, roles, budget=4, max_order=max_order)
    expected = brute_force_sets(problem, 4)
    assert expected[0] == -np.inf  # nothing supervised: nothing can be transferred
    for budget in (1, 2, 3, 4):
        p = build_problem(published16k, roles, budget=budget, max_order=max_order)
        result = solve(p)
        assert result.status == "optimal"
        check_constraints(result, p)
        assert result.objective == pytest.approx(expected[budget], abs=1e-9)
        assert solve_highs(p).objective == pytest.approx(expected[budget], abs=1e-9)


def test_published16k_known_taxonomy(published16k):
    """Budget 1: supervise denoise (its self affinity is the largest, and every target has some
    first-order transfer from it); the objective is its √A(self) plus the best √A(denoise -> t)."""
    roles = assign_roles(published16k)
    result = solve(build_problem(published16k, roles, budget=1, max_order=1))
    assert result.supervised == ("denoise",)
    scores = {t.key: t.affinity for t in published16k}
    expected = math.sqrt(scores["self__denoise"]) + sum(
        math.sqrt(scores[f"denoise__{t}"]) for t in roles.targets if t != "denoise")
    assert result.objective == pytest.approx(expected, abs=1e-12)
    assert all(s == ("denoise",) for s in result.transfers.values())


def test_formulations_and_solvers_agree(published16k):
    roles = assign_roles(published16k, unused=["class_selected"])
    for budget, k in ((3, 2), (6, 1), (4, 3)):
        p = build_problem(published16k, roles, budget=budget, max_order=k)
        strong, official, highs = solve(p), solve(p, formulation="official"), solve_highs(p)
        assert strong.objective == pytest.approx(official.objective, abs=1e-9)
        assert strong.objective == pytest.approx(highs.objective, abs=1e-9)
        check_constraints(official, p)


def test_sweep_equals_separate_solves(published16k):
    roles = assign_roles(published16k)
    results = sweep(published16k, roles, [2, 5], [1, 3])
    assert [(r.max_order, r.budget) for r in results] == [(1, 2.0), (1, 5.0), (3, 2.0), (3, 5.0)]
    for r in results:
        alone = solve(build_problem(published16k, roles, budget=r.budget, max_order=r.max_order))
        assert r.objective == pytest.approx(alone.objective, abs=1e-9)
    # more budget or a higher order never lowers the optimum
    assert results[0].objective < results[1].objective and results[0].objective <= results[2].objective


def test_objectives_sqrt_values_and_result(published16k):
    roles = assign_roles(published16k)
    raw = solve(build_problem(published16k, roles, budget=3, max_order=1, sqrt=False))
    chosen = [raw.choices[t].affinity for t in roles.targets]
    assert raw.objective == pytest.approx(sum(chosen))  # raw affinities, all above the 1e-5 clip
    quality = solve(build_problem(published16k, roles, budget=3, max_order=2, objective="quality"))
    assert quality.objective == pytest.approx(sum(math.sqrt(c.quality) for c in quality.choices.values()))
    # a large value on one target forces its supervision when self beats every transfer into it
    valued = solve(build_problem(published16k, roles, budget=2, max_order=1, values={"rgb2sfnorm": 50.0}))
    assert "rgb2sfnorm" in valued.supervised
    d = valued.to_dict()
    assert set(d) >= {"objective", "supervised", "transfers", "budget", "max_order", "status"}
    assert set(d["transfers"]) | set(d["supervised"]) >= set(roles.targets)
    g = valued.to_graph(roles)
    assert isinstance(g, nx.DiGraph) and g.nodes["rgb2sfnorm"]["supervised"]
    assert all(g.has_edge(s, t) for t, srcs in valued.transfers.items() for s in srcs)


def test_roles_are_respected(published16k):
    roles = assign_roles(published16k, source_only=["rgb2sfnorm"], target_only=["denoise"],
                         unused=["keypoint3d", "class_places"])
    assert roles.role("rgb2sfnorm") == "source-only" and roles.role("denoise") == "target-only"
    p = build_problem(published16k, roles, budget=4, max_order=3)
    result = solve(p)
    check_constraints(result, p)
    assert "denoise" in result.transfers and "rgb2sfnorm" not in result.choices
    assert "keypoint3d" not in result.supervised and "keypoint3d" not in result.choices


def test_costs_and_transfer_costs():
    a, b, t = "a", "b", "t"
    transfers = [Transfer(("self",), x, 0.25) for x in (a, b, t)] + [
        Transfer((a,), t, 0.64), Transfer((b,), t, 0.36), Transfer((a,), b, 0.49), Transfer((b,), a, 0.04)]
    roles = assign_roles(transfers)
    # supervising a costs 3 > budget: the best plan supervises b (cost 1) and transfers b -> a, b -> t
    p = build_problem(transfers, roles, budget=2, costs={"a": 3})
    r = solve(p)
    assert r.supervised == ("b",) and r.transfers == {"a": ("b",), "t": ("b",)}
    assert r.objective == pytest.approx(0.5 + 0.2 + 0.6)
    # with a cost per transfer into t, the budget no longer covers b -> t: t is supervised instead
    p = build_problem(transfers, roles, budget=2, costs={"a": 3}, transfer_costs={"t": 1.5})
    r = solve(p)
    check_constraints(r, p)
    assert set(r.supervised) == {"b", "t"} and r.cost == 2.0


def test_a_crashed_cbc_leaves_no_files_and_the_default_settings_retry(monkeypatch):
    import pulp

    transfers = [Transfer(("self",), x, 0.25) for x in "ab"] + [Transfer(("a",), "b", 0.64)]
    p = build_problem(transfers, assign_roles(transfers), budget=1)
    real, calls = pulp.LpProblem.solve, []

    def crash_once(problem, solver=None, **kwargs):
        calls.append((solver.tmpDir, list(solver.options)))
        if len(calls) == 1:
            Path(solver.tmpDir, "model.mps").write_text("left behind by a crash")
            raise pulp.PulpSolverError("Pulp: Error while executing")
        return real(problem, solver, **kwargs)

    monkeypatch.setattr(pulp.LpProblem, "solve", crash_once)
    r = solve(p)
    assert r.supervised == ("a",) and r.transfers == {"b": ("a",)}
    (first_dir, first_options), (second_dir, second_options) = calls
    assert first_dir == second_dir and not Path(first_dir).exists()     # the private folder is gone
    assert "preprocess off" in first_options and "preprocess off" not in second_options


def test_bad_inputs_raise_one_line_errors(published16k):
    roles = assign_roles(published16k)
    for kwargs, match in ((dict(budget=-1), "budget must be"), (dict(budget=math.nan), "budget must be"),
                          (dict(max_order=0), "max order must be"), (dict(objective="speed"), "objective"),
                          (dict(costs={"nope": 1}), "unknown task 'nope'"),
                          (dict(values={"denoise": -1}), "value of task 'denoise'")):
        with pytest.raises(TaxonomyError, match=match):
            build_problem(published16k, roles, **kwargs)
    with pytest.raises(TaxonomyError, match="source-only task 'nope'"):
        assign_roles(published16k, source_only=["nope"])
    with pytest.raises(TaxonomyError, match="two roles"):
        assign_roles(published16k, source_only=["denoise"], unused=["denoise"])
    p = build_problem(published16k, roles, budget=0.5)
    result = solve(p)
    assert result.status == "infeasible"
    with pytest.raises(TaxonomyError, match="no taxonomy fits budget 0.5"):
        require_optimal(result, p)


# ---------------------------------------------------------------------------- random small instances


def brute_force_vectors(problem):
    """Best objective over every 0/1 vector (x_e..., x_s...), constraints written from §5.1 directly;
    -inf if none is feasible. Independent of the PuLP/array builders."""
    edges, sup = problem.edges, list(problem.supervisable)
    n = len(edges) + len(sup)
    x = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1          # (2^n, n)
    xe, xs = x[:, :len(edges)], x[:, len(edges):]
    col = {s: i for i, s in enumerate(sup)}
    ok = np.ones(len(x), dtype=bool)
    for i, e in enumerate(edges):                                  # (I)
        for s in e.transfer.sources:
            ok &= ~((xe[:, i] == 1) & (xs[:, col[s]] == 0))
    for t in problem.roles.targets + problem.roles.target_only:    # (II)
        into = sum(xe[:, i] for i, e in enumerate(edges) if e.transfer.target == t) + 0
        ok &= (into + (xs[:, col[t]] if t in col else 0)) == 1
    cost = xs @ np.array([problem.supervise_cost[s] for s in sup]) + xe @ np.array([e.cost for e in edges] or [0.0])[:len(edges)]
    ok &= cost <= problem.budget + 1e-9                            # (III)
    value = xe @ np.array([e.value for e in edges]) + xs @ np.array([problem.supervise_value[s] for s in sup])
    return value[ok].max() if ok.any() else -np.inf


@st.composite
def instances(draw):
    names = ["a", "b", "c", "d"][:draw(st.integers(2, 4))]
    targets = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    transfers = [Transfer(("self",), t, draw(st.floats(0.0, 1.0))) for t in targets]
    for t in targets:
        others = [s for s in names if s != t]
        for size in (1, 2):
            for combo in combinations(others, size):
                if draw(st.booleans()):
                    transfers.append(Transfer(combo, t, draw(st.floats(0.0, 1.0))))
    transfers = transfers[:11]
    assume_known = {n for tr in transfers for n in (*tr.sources, tr.target) if n != "self"}
    known = [n for n in names if n in assume_known]
    role = {n: draw(st.sampled_from(["default", "default", "source-only", "target-only", "unused"])) for n in known}
    pick = lambda r: [n for n in known if role[n] == r]  # noqa: E731
    kwargs = dict(budget=draw(st.sampled_from([0, 0.5, 1, 1.5, 2, 3])), max_order=draw(st.integers(1, 2)),
                  costs={n: draw(st.sampled_from([0.0, 0.5, 1.0, 2.0])) for n in known},
                  values={n: draw(st.sampled_from([0.5, 1.0, 3.0])) for n in known},
                  transfer_costs={n: draw(st.sampled_from([0.0, 0.0, 0.5])) for n in known},
                  sqrt=draw(st.booleans()))
    return transfers, (pick("source-only"), pick("target-only"), pick("unused")), kwargs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_random_instances_match_brute_force(instance):
    transfers, (source_only, target_only, unused), kwargs = instance
    roles = assign_roles(transfers, source_only=source_only, target_only=target_only, unused=unused)
    try:
        problem = build_problem(transfers, roles, **kwargs)
    except TaxonomyError as err:  # ill-posed: say so, never crash
        assert "no usable transfer" in str(err) or "no task to solve" in str(err) or "has no 'self'" in str(err)
        return
    expected = brute_force_vectors(problem)
    for result in (solve(problem), solve(problem, formulation="official"), solve_highs(problem)):
        if expected == -np.inf:
            assert result.status == "infeasible"
        else:
            assert result.status == "optimal"
            check_constraints(result, problem)
            assert result.objective == pytest.approx(expected, abs=1e-6)


def test_roles_default_from_the_data():
    transfers = [Transfer(("self",), "t", 0.5), Transfer(("j",), "t", 0.5)]
    assert assign_roles(transfers) == Roles(targets=("t",), source_only=("j",))
