"""stages/affinity.py and stages/taxonomy.py on synthetic loss files laid out as docs/losses-format.md
says (the transfer stages that write the real ones come later)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from conftest import write_params

from taskonomy.errors import DataError
from taskonomy.losses import write_seeded

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["rgb2depth", "reshade", "edge2d"]
SOURCE_ONLY = ["jigsaw", "random"]
TASKS = TARGETS + SOURCE_ONLY
SEEDS = 2
N = {"rgb2depth": 120, "reshade": 120, "edge2d": 90}
# how good each source is for each target (multiplies the per-item base loss; lower is better)
QUALITY = {"rgb2depth": {"rgb2depth": 0.7, "reshade": 0.8, "edge2d": 1.1, "jigsaw": 1.3, "random": 1.6},
           "reshade": {"rgb2depth": 0.75, "reshade": 0.7, "edge2d": 1.2, "jigsaw": 1.3, "random": 1.6},
           "edge2d": {"rgb2depth": 1.2, "reshade": 1.1, "edge2d": 0.7, "jigsaw": 0.9, "random": 1.6}}


def _load_stage(name: str):
    if str(ROOT / "stages") not in sys.path:
        sys.path.append(str(ROOT / "stages"))  # as for `python stages/<name>.py`: its `_stage` import
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_losses(root: Path, high: bool = True) -> None:
    """params.yaml + every loss file of docs/losses-format.md for TASKS."""
    rng = np.random.default_rng(0)
    params = {"tasks": {t: {"source_only": t in SOURCE_ONLY} for t in TASKS},
              "affinity": {"clip": 0.001, "bootstrap": 60},
              "taxonomy": {"budgets": [1, 2, 3], "max_orders": [1, 2], "objective": "affinity", "sqrt": True,
                           "stability": 30}}
    write_params(root / "params.yaml", params)
    base = {t: rng.gamma(2.0, 1.0, N[t]) for t in TARGETS}
    noisy = lambda t, f: (base[t] * f + rng.normal(0, 0.08, N[t])).astype(np.float32)  # noqa: E731
    for t in TARGETS:
        (root / "models" / t).mkdir(parents=True)
        np.save(root / "models" / t / "test_losses.npy", noisy(t, 0.5))
    for s in TASKS:            # two readout seeds per transfer: seed_losses.npz and their mean in losses.npz
        write_seeded(root / "outputs" / "transfer" / s,
                     {t: np.stack([noisy(t, QUALITY[t][s]) for _ in range(SEEDS)]) for t in TARGETS})
    (root / "outputs" / "pixels").mkdir(parents=True)
    np.savez(root / "outputs" / "pixels" / "losses.npz", **{t: noisy(t, 1.0) for t in TARGETS})
    if high:
        for t in TARGETS:
            (root / "outputs" / "transfer_high" / t).mkdir(parents=True)
            pair = sorted((s for s in TASKS if s != t), key=lambda s: QUALITY[t][s])[:2]
            write_seeded(root / "outputs" / "transfer_high" / t,
                         {"__".join(pair): np.stack([noisy(t, 0.6) for _ in range(SEEDS)])})


def affinity_args(root: Path, high: bool = True) -> list[str]:
    args = ["--params", str(root / "params.yaml"), "--models", str(root / "models"),
            "--transfer", str(root / "outputs" / "transfer"), "--pixels", str(root / "outputs" / "pixels" / "losses.npz"),
            "--table", str(root / "reports" / "affinities.csv"), "--first-order", str(root / "reports" / "affinity"),
            "--resamples", str(root / "outputs" / "affinity" / "resamples.npz")]
    return args + (["--high", str(root / "outputs" / "transfer_high")] if high else [])


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("affinity_stage")
    write_losses(root)
    assert _load_stage("affinity").main(affinity_args(root)) == 0
    return root


def test_affinity_table(stage_run):
    table = pd.read_csv(stage_run / "reports" / "affinities.csv")
    assert list(table.columns) == ["target", "sources", "order", "affinity", "quality", "gain", "mean_loss",
                                   "affinity_lo", "affinity_hi", "quality_lo", "quality_hi", "gain_lo", "gain_hi"]
    for score in ("affinity", "quality", "gain"):     # the point estimate inside its interval, where defined
        inside = table[[f"{score}_lo", score, f"{score}_hi"]].dropna()
        assert len(inside) and (inside[f"{score}_lo"] <= inside[score] + 1e-9).all() \
            and (inside[score] <= inside[f"{score}_hi"] + 1e-9).all()
    # per target: self, 5 first-order (random and t <- t included), 1 second-order, pixels
    assert table.groupby("target").size().to_dict() == {t: 8 for t in TARGETS}
    assert table.groupby("target")["affinity"].sum().to_numpy() == pytest.approx(np.ones(3), abs=1e-6)
    depth = table[table.target == "rgb2depth"].set_index("sources")
    assert depth.loc["self", "order"] == 0 and depth.loc["random", "order"] == 1
    assert depth.loc["reshade__edge2d", "order"] == 2
    assert depth.loc["self", "quality"] == 0.5 and depth.loc["pixels", "gain"] == 0.5
    assert np.isnan(depth.loc["pixels", "affinity"])
    ranked = depth["affinity"].drop("pixels").sort_values(ascending=False).index.tolist()
    assert ranked == ["self", "reshade__edge2d", "rgb2depth", "reshade", "edge2d", "jigsaw", "random"]
    own = np.load(stage_run / "models" / "rgb2depth" / "test_losses.npy")
    jig = np.load(stage_run / "outputs" / "transfer" / "jigsaw" / "losses.npz")["rgb2depth"]
    assert depth.loc["jigsaw", "quality"] == pytest.approx(np.mean(jig < own))
    assert depth.loc["jigsaw", "mean_loss"] == pytest.approx(jig.astype(np.float64).mean(), rel=1e-6)


def test_first_order_matrices(stage_run):
    folder = stage_run / "reports" / "affinity"
    aff = pd.read_csv(folder / "first_order_affinities.csv", index_col=0)
    loss = pd.read_csv(folder / "first_order_losses.csv", index_col=0)
    assert list(aff.index) == TASKS and list(aff.columns) == TARGETS
    assert aff.sum().to_numpy() == pytest.approx(np.ones(3), abs=1e-6)
    assert aff["edge2d"].idxmax() == "edge2d" and aff["edge2d"].idxmin() == "random"
    assert loss.loc["random"].gt(loss.loc["rgb2depth"]).all()
    assert (folder / "first_order.png").stat().st_size > 1000


def test_first_order_only_run_without_high(tmp_path):
    write_losses(tmp_path, high=False)
    assert _load_stage("affinity").main(affinity_args(tmp_path, high=False)) == 0
    table = pd.read_csv(tmp_path / "reports" / "affinities.csv")
    assert table["order"].max() == 1 and len(table) == 3 * 7


def test_missing_and_bad_files_name_the_file(tmp_path):
    write_losses(tmp_path)
    stage = _load_stage("affinity")
    (tmp_path / "outputs" / "transfer" / "jigsaw" / "losses.npz").unlink()
    with pytest.raises(DataError, match=r"transfer/jigsaw/losses.npz: missing; it is written by stage transfer@jigsaw"):
        stage.main(affinity_args(tmp_path))
    np.savez(tmp_path / "outputs" / "transfer" / "jigsaw" / "losses.npz",
             **{t: np.ones(N[t] - (t == "reshade"), np.float32) for t in TARGETS})
    with pytest.raises(DataError, match=r"jigsaw/losses.npz\[reshade\]: 119 items for target reshade"):
        stage.main(affinity_args(tmp_path))
    np.savez(tmp_path / "outputs" / "transfer" / "jigsaw" / "losses.npz", rgb2depth=np.ones(N["rgb2depth"]))
    with pytest.raises(DataError, match=r"jigsaw/losses.npz: no key 'reshade'"):
        stage.main(affinity_args(tmp_path))
    (tmp_path / "outputs" / "transfer_high" / "edge2d" / "losses.npz").unlink()
    (tmp_path / "models" / "edge2d" / "test_losses.npy").write_bytes(b"junk")
    # a subprocess: one line on stderr, exit 2
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "affinity.py"), *affinity_args(tmp_path)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "losses.npz" in proc.stderr and "Traceback" not in proc.stderr


def test_taxonomy_stage_on_the_table(stage_run):
    root = stage_run
    out = root / "reports" / "taxonomy"
    args = ["--params", str(root / "params.yaml"), "--affinities", str(root / "reports" / "affinities.csv"),
            "--first-order", str(root / "reports" / "affinity" / "first_order_affinities.csv"),
            "--solutions", str(out / "solutions"), "--metrics", str(out / "metrics.json"),
            "--grid", str(out / "grid.csv"), "--tree", str(out / "tree"),
            "--resamples", str(root / "outputs" / "affinity" / "resamples.npz"), "--stability", str(out / "stability.csv")]
    assert _load_stage("taxonomy").main(args) == 0
    # edge stability: every choice of every cell with the share of the 30 resamples re-solved that make it
    stability = pd.read_csv(out / "stability.csv", keep_default_na=False)
    assert set(stability.kind) == {"edge", "supervised"} and stability.share.between(0, 1).all()
    assert len(stability.groupby(["max_order", "budget"])) == 6
    for (k, b), cell in stability.groupby(["max_order", "budget"]):
        assert 1 - 1e-4 <= cell[cell.kind == "supervised"].share.sum() <= b + 1e-4     # within the budget
        # in every resample each target is supervised or served by exactly one transfer
        assert cell.groupby("task").share.sum().to_dict() == pytest.approx({t: 1.0 for t in TARGETS}, abs=1e-4)
    solution = json.loads((out / "solutions" / "b1_k2.json").read_text())
    chosen = stability[(stability.budget == 1) & (stability.max_order == 2) & stability.chosen]
    assert solution["stability"]["supervised"] == {t: pytest.approx(chosen.set_index("task").share[t])
                                                   for t in solution["supervised"]}
    graph_json = json.loads((out / "solutions" / "b1_k2.graph.json").read_text())
    assert all(0 <= e["stability"] <= 1 for e in graph_json["edges"])
    grid = pd.read_csv(out / "grid.csv")
    assert len(grid) == 6 and {"budget", "max_order", "gain", "quality", "objective"} <= set(grid.columns)
    assert (grid.status == "optimal").all()
    # the headline: the largest max order at the smallest, middle and largest budget, as in the grid
    metrics = json.loads((out / "metrics.json").read_text())["taxonomy"]
    assert set(metrics) == {"k2"} and set(metrics["k2"]) == {"b1", "b2", "b3"}
    for b, cell in metrics["k2"].items():
        row = grid[(grid.max_order == 2) & (grid.budget == int(b[1:]))].iloc[0]
        assert cell["objective"] == pytest.approx(row.objective, rel=1e-5)
        assert 0 <= cell["supervised_stability"] <= 1
    assert grid.groupby("max_order")["objective"].apply(lambda s: s.is_monotonic_increasing).all()
    # budget 3 with 3 targets: every target supervised, nothing transferred
    b3 = json.loads((out / "solutions" / "b3_k1.json").read_text())
    assert sorted(b3["supervised"]) == sorted(TARGETS) and b3["transfers"] == {}
    b1 = json.loads((out / "solutions" / "b1_k2.json").read_text())
    assert len(b1["supervised"]) == 1 and len(b1["transfers"]) == 2
    graph = nx.node_link_graph(json.loads((out / "solutions" / "b1_k2.graph.json").read_text()), edges="edges")
    assert set(graph.nodes) == set(TASKS)
    assert graph.nodes["jigsaw"]["role"] == "source-only"
    tree = json.loads((out / "tree" / "similarity_tree.json").read_text())
    assert sorted(tree["labels"]) == sorted(TARGETS) and len(tree["linkage"]) == 2
    # rgb2depth and reshade share their best sources: they merge first
    first_merge = {tree["labels"][int(i)] for i in tree["linkage"][0][:2]}
    assert first_merge == {"rgb2depth", "reshade"}
    assert (out / "tree" / "similarity_tree.png").stat().st_size > 1000


def test_solve_cli_on_the_table(stage_run, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "taskonomy", "solve", "--affinities",
                           str(stage_run / "reports" / "affinities.csv"), "--budget", "1", "--out",
                           str(tmp_path / "t.json")], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["roles"]["source_only"] == SOURCE_ONLY  # only sources in the table
    assert len(data["supervised"]) == 1 and data["status"] == "optimal"
