"""The taxonomy under the domain shift (issue 24, part 3): kept readouts, rescoring another split with
them, the paired comparison of two domains, and stage adapt_taxonomy end to end on a tiny fake bank."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_params
from fake_bank import write_fake_bank

from taskonomy.analysis import shift
from taskonomy.analysis.affinity import first_order_matrices
from taskonomy.bank import load_splits
from taskonomy.config import load_params
from taskonomy.errors import DataError
from taskonomy.losses import SEED_FILE, load_npz, read_target_losses, seed_mean, write_keyed
from taskonomy.nets.outputs import make_task_network
from taskonomy.sources import PIXELS, SELF
from taskonomy.transfer import engine as T
from taskonomy.transfer.executors import ExecutorSpec
from taskonomy.transfer.outputs import first_order
from taskonomy.transfer.rescore import read_rescored, rescore, write_rescored

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["rgb2depth", "denoise", "class_scene", "fix_pose"]     # plain and noisy inputs, a pair task
TASKS = TARGETS + ["random"]


def _load_stage(name: str):
    if str(ROOT / "stages") not in sys.path:
        sys.path.append(str(ROOT / "stages"))  # as for `python stages/<name>.py`: its `_stage` import
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# A tiny trained pipeline: task networks, first-order transfers, pixels, and a shifted target bank
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("adapt_taxonomy")
    bank = write_fake_bank(root / "data" / "bank", {"train": 4, "transfer": 2, "test": 3})
    params_path = write_params(root / "params.yaml", {
        "tasks": {t: {"source_only": t == "random"} for t in TASKS},
        "train_task": {"width": 4, "head_width": 16, "bottleneck_channels": 4, "epochs": 1, "batch_size": 8,
                       "threads": 1, "device": "cpu", "samples": 1},
        "transfer": {"epochs": 1, "batch_size": 8, "decoder_width": 4, "workers": 1, "threads": 1, "device": "cpu"},
        "taxonomy": {"budgets": [1, 2], "max_orders": [1]},
        "adapt": {"tasks": ["rgb2depth"], "methods": {}, "bootstrap": 40}})
    params = load_params(params_path)
    for task in TASKS:
        make_task_network(task, params, bank, root / "models" / task)
        first_order(task, params, bank, root / "models", root / "outputs" / "transfer" / task)
    assert _load_stage("pixels").main(["--bank", str(bank), "--out", str(root / "outputs" / "pixels"),
                                       "--params", str(params_path)]) == 0
    # the target domain: the test split's views with other colours (same labels), renamed target_test
    target = root / "data" / "target" / "target_test"
    shutil.copytree(bank / "test", target)
    rgb = np.load(target / "rgb.npy")
    np.save(target / "rgb.npy", (255 - rgb[:, ::-1]).astype(np.uint8))       # (V, 3, R, R): inverted, BGR
    return root, params_path, params


def _stored(root: Path, params) -> dict[str, dict[str, np.ndarray]]:
    return read_target_losses(params.targets(), list(params.tasks), models=root / "models",
                              transfer=root / "outputs" / "transfer", pixels=root / "outputs" / "pixels" / "losses.npz")


def test_readouts_are_kept_and_the_losses_do_not_change(pipeline, tmp_path):
    root, _, params = pipeline
    out = root / "outputs" / "transfer" / "rgb2depth"
    payload = T.load_readouts(out / T.READOUT_FILE, "transfer@rgb2depth")
    assert payload["source"] == "rgb2depth" and sorted(payload["readouts"]) == sorted(TARGETS)
    assert set(payload["moments"]) == {"plain", "noisy"}
    for moments in payload["moments"].values():
        assert moments["mean"].shape == moments["std"].shape == (1, 4, 1, 1)
    record = payload["readouts"]["fix_pose"]
    assert record["sources"] == ["rgb2depth"] and record["in_channels"] == record["width"] == 4
    assert all(v.device.type == "cpu" for v in record["state"].values())
    assert (out / T.READOUT_FILE).stat().st_size < 1_000_000                  # small
    pixels = T.load_readouts(root / "outputs" / "pixels" / T.READOUT_FILE, PIXELS)
    assert pixels["moments"] == {} and sorted(pixels["readouts"]) == sorted(TARGETS)
    # the losses, byte for byte, are those of the engine without kept readouts
    targets = T.load_targets(load_splits(root / "data" / "bank"), params.targets())
    encoder = T.load_source_encoder(root / "models" / "rgb2depth" / "model.pt", "rgb2depth")
    context = T.TransferContext({"rgb2depth": T.encode_source(encoder, targets)}, T.strip_views(targets),
                                params.transfer, params.train_task, "cpu")
    losses = T.run_transfers(context, [(("rgb2depth",), t) for t in targets], ExecutorSpec(threads=1))
    write_keyed(tmp_path / "losses.npz", {t: losses[t]["rgb2depth"] for t in targets})
    assert (tmp_path / "losses.npz").read_bytes() == (out / "losses.npz").read_bytes()


@pytest.mark.parametrize("workers", [1, 2])
def test_rescoring_the_source_test_split_reproduces_the_stored_losses_exactly(pipeline, tmp_path, workers):
    root, _, params = pipeline
    params = dataclasses.replace(params, transfer=dataclasses.replace(params.transfer, workers=workers))  # forked
    scored = rescore(params, bank=root / "data" / "bank", target_bank=root / "data" / "bank", split="test",
                     models=root / "models", transfer=root / "outputs" / "transfer", pixels=root / "outputs" / "pixels")
    stored = _stored(root, params)
    assert list(scored) == list(stored)
    for t in stored:
        assert list(scored[t]) == list(stored[t]) == [SELF, *TASKS, PIXELS]
        for key, values in stored[t].items():
            assert scored[t][key].dtype == np.float32
            np.testing.assert_array_equal(scored[t][key], values.astype(np.float32), err_msg=f"{key} -> {t}")
    # the writer lays them out as the affinity code reads them
    write_rescored(tmp_path, scored)
    back = read_rescored(tmp_path, params.targets(), list(params.tasks))
    assert all(np.array_equal(back[t][k], stored[t][k]) for t in stored for k in stored[t])


def test_readouts_at_several_seeds_keep_each_seed_and_their_mean(pipeline, tmp_path):
    """transfer.seeds = 2: seed 0's losses are the one-seed run's, byte for byte; seed 1 is another training;
    losses.npz holds their mean, and rescoring the source test split with the kept readouts of both seeds
    gives that mean back exactly."""
    root, _, params = pipeline
    two = dataclasses.replace(params, transfer=dataclasses.replace(params.transfer, seeds=2))
    transfer = tmp_path / "transfer"
    for task in TASKS:
        first_order(task, two, root / "data" / "bank", root / "models", transfer / task)
    one = np.load(root / "outputs" / "transfer" / "rgb2depth" / "losses.npz")
    per_seed = load_npz(transfer / "rgb2depth" / SEED_FILE, "transfer@rgb2depth", seeded=True)
    mean = np.load(transfer / "rgb2depth" / "losses.npz")
    for t in TARGETS:
        assert per_seed[t].shape == (2, len(one[t]))
        np.testing.assert_array_equal(per_seed[t][0].astype(np.float32), one[t])
        assert not np.array_equal(per_seed[t][1], per_seed[t][0])
        np.testing.assert_array_equal(mean[t], seed_mean(per_seed[t]).astype(np.float32))
    payload = T.load_readouts(transfer / "rgb2depth" / T.READOUT_FILE, "transfer@rgb2depth")
    assert T.readout_seeds(payload) == 2 and sorted(payload["seed_readouts"][0]) == sorted(TARGETS)
    scored = rescore(two, bank=root / "data" / "bank", target_bank=root / "data" / "bank", split="test",
                     models=root / "models", transfer=transfer, pixels=root / "outputs" / "pixels")
    for t in TARGETS:
        for s in TASKS:
            np.testing.assert_array_equal(scored[t][s], np.load(transfer / s / "losses.npz")[t], err_msg=f"{s} -> {t}")


def test_saved_moments_standardise_the_new_split(pipeline):
    """The target split is standardised with the source transfer split's moments, not its own."""
    root, _, params = pipeline
    scored = rescore(params, bank=root / "data" / "bank", target_bank=root / "data" / "target", split="target_test",
                     models=root / "models", transfer=root / "outputs" / "transfer", pixels=root / "outputs" / "pixels")
    stored = _stored(root, params)
    for t in TARGETS:   # the labels are the same, the images are not: every loss moves
        assert len(scored[t][SELF]) == len(stored[t][SELF])
        assert not np.array_equal(scored[t]["rgb2depth"], stored[t]["rgb2depth"].astype(np.float32))


# --------------------------------------------------------------------------------------------------
# The paired comparison on synthetic losses
# --------------------------------------------------------------------------------------------------

SOURCES = ["a", "b", "c", "d", "e", "random"]
QUALITY = {"a": 0.6, "b": 0.8, "c": 1.0, "d": 1.2, "e": 1.4, "random": 2.0}


def synthetic(n: int = 200, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Targets a, b, c with per-item losses ordered by QUALITY (the target itself best of all)."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in ("a", "b", "c"):
        base = rng.gamma(2.0, 1.0, n)
        per = {SELF: base * 0.5 + rng.normal(0, 0.05, n)}
        for s in SOURCES:
            per[s] = base * (0.4 if s == t else QUALITY[s]) + rng.normal(0, 0.05, n)
        per[PIXELS] = base * 1.1 + rng.normal(0, 0.05, n)
        out[t] = per
    return out


def test_bootstrap_affinities_of_the_items_themselves_are_the_first_order_matrix():
    losses = synthetic()
    first = shift.first_order_only(losses)
    _, affinity = first_order_matrices(first, sources=SOURCES)
    for t, per in first.items():
        stacked = np.stack([per[s] for s in SOURCES])
        identity = np.arange(stacked.shape[1])[None, :]
        np.testing.assert_allclose(shift.bootstrap_affinities(stacked, identity, 0.001)[0],
                                   affinity[t].to_numpy(), rtol=0, atol=1e-12)


def test_identical_domains_keep_everything():
    losses = synthetic()
    rows, aff_s, aff_t = shift.best_sources(losses, losses, rounds=50)
    assert aff_s.equals(aff_t)
    for r in rows:
        assert r.unchanged and r.unchanged_share == 1.0
        assert r.rho == pytest.approx(1.0) and r.rho_lo == pytest.approx(1.0) and r.rho_hi == pytest.approx(1.0)
    # the best source is never the target itself
    assert [(r.target, r.source_best) for r in rows] == [("a", "b"), ("b", "a"), ("c", "a")]
    budgets = shift.taxonomy_shift(losses, losses, ["random"], [1, 2, 3], rounds=3)
    for b in budgets:
        assert b.both_solved and b.supervised_kept == 1.0 and set(b.choice_kept.values()) == {1.0}
        assert np.all(b.supervised_kept_draws == 1.0)
    assert all(row["survives"] == 1 for row in shift.edge_rows(budgets))


def test_swapped_sources_change_the_best_source():
    source = synthetic()
    target = {t: dict(per) for t, per in source.items()}
    # in the target domain, a's best source (b) and its worst task source (e) swap their losses: e is best
    target["a"]["b"], target["a"]["e"] = source["a"]["e"], source["a"]["b"]
    rows, aff_s, aff_t = shift.best_sources(source, target, rounds=100)
    by = {r.target: r for r in rows}
    assert by["a"].source_best == "b" and by["a"].target_best == "e" and not by["a"].unchanged
    assert by["a"].unchanged_share < 0.05
    # ranks of b, c, d, e, random: 1 2 3 4 5 -> 4 2 3 1 5, rho = 1 - 6 (9 + 9) / (5 (25 - 1)) in every resample
    assert by["a"].rho == pytest.approx(0.1) and (by["a"].rho_lo, by["a"].rho_hi) == pytest.approx((0.1, 0.1))
    assert by["b"].unchanged and by["b"].unchanged_share > 0.9 and by["b"].rho == pytest.approx(1.0)
    assert aff_t.at["b", "a"] < aff_s.at["b", "a"]
    metrics = shift.metrics(rows, [], 100, 0)
    assert metrics["best_unchanged"] == pytest.approx(2 / 3, abs=1e-4)
    text = shift.findings(rows, [], 100, 0)["best_sources"]
    assert "2 of 3 targets is unchanged" in text and "a b -> e" in text


def test_unpaired_domains_are_refused():
    source = synthetic()
    target = synthetic(n=150)
    with pytest.raises(DataError, match="items must be paired"):
        shift.best_sources(source, target, rounds=10)


# --------------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------------

def stage_args(root: Path, params_path: Path) -> list[str]:
    return ["--params", str(params_path), "--bank", str(root / "data" / "bank"),
            "--target-bank", str(root / "data" / "target"), "--split", "target_test", "--models", str(root / "models"),
            "--transfer", str(root / "outputs" / "transfer"), "--pixels", str(root / "outputs" / "pixels"),
            "--out", str(root / "outputs" / "adapt_taxonomy"), "--report", str(root / "reports" / "adapt" / "taxonomy"),
            "--metrics", str(root / "reports" / "metrics" / "adapt_taxonomy.json")]


def test_stage_end_to_end(pipeline):
    root, params_path, params = pipeline
    assert _load_stage("adapt_taxonomy").main(stage_args(root, params_path)) == 0
    report = root / "reports" / "adapt" / "taxonomy"
    affinity = pd.read_csv(report / "first_order_affinities.csv", index_col=0)
    assert list(affinity.index) == TASKS and list(affinity.columns) == TARGETS
    assert affinity.sum().to_numpy() == pytest.approx(np.ones(len(TARGETS)))
    # the affinity stage reads the rescored losses unchanged and finds the same matrix
    out = root / "outputs" / "adapt_taxonomy"
    assert _load_stage("affinity").main([
        "--params", str(params_path), "--models", str(out / "models"), "--transfer", str(out / "transfer"),
        "--pixels", str(out / "pixels" / "losses.npz"), "--first-order", str(root / "check")]) == 0
    assert pd.read_csv(root / "check" / "first_order_affinities.csv", index_col=0).equals(affinity)

    best = pd.read_csv(report / "best_sources.csv")
    assert list(best.columns) == shift.BEST_FIELDS and list(best.target) == TARGETS
    assert best.unchanged_share.between(0, 1).all() and (best.rho_lo <= best.rho_hi).all()
    assert all(b != t for b, t in zip(best.source_domain_best, best.target))
    edges = pd.read_csv(report / "edges.csv", dtype={"budget": str})
    assert list(edges.columns) == shift.EDGE_FIELDS and len(edges) == 2 * len(TARGETS)
    assert set(edges.budget) == {"1", "2"} and edges.survives.isin([0, 1]).all()
    assert ((edges.source_domain == edges.target_domain) == (edges.survives == 1)).all()
    numbers = json.loads((report / "shift.json").read_text())
    assert numbers["targets"] == 4 and numbers["rounds"] == 40 and set(numbers["taxonomy"]) == {"b1", "b2"}
    headline = json.loads((root / "reports" / "metrics" / "adapt_taxonomy.json").read_text())["adapt_taxonomy"]
    assert headline["rho_mean_lo"] <= headline["rho_mean"] <= headline["rho_mean_hi"]
    assert headline == {k: numbers[k] for k in headline}
    findings = json.loads((report / "findings.json").read_text())
    assert set(findings["findings"]) == {"best_sources", "taxonomy"} and findings["split"] == "target_test"
    assert (report / "shift.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(report / "supervised.csv")) == 2


@pytest.mark.parametrize("missing, stage", [("outputs/transfer/random/readouts.pt", "transfer@random"),
                                            ("outputs/pixels/readouts.pt", "pixels"),
                                            ("data/target/target_test/manifest.json", "render_target")])
def test_a_missing_input_is_named_before_any_work(pipeline, tmp_path, missing, stage):
    root, params_path, _ = pipeline
    copy = tmp_path / "root"
    for part in ("data", "models", "outputs"):
        shutil.copytree(root / part, copy / part, ignore=shutil.ignore_patterns("adapt_taxonomy"))
    (copy / missing).unlink()
    with pytest.raises(DataError, match=rf"{missing}: missing; it is written by stage {stage}"):
        _load_stage("adapt_taxonomy").main(stage_args(copy, params_path))
    assert not (copy / "outputs" / "adapt_taxonomy").exists() and not (copy / "reports").exists()


def test_a_split_of_other_scenes_is_refused(pipeline, tmp_path):
    root, params_path, _ = pipeline
    target = tmp_path / "target" / "target_train"
    shutil.copytree(root / "data" / "target" / "target_test", target)
    manifest = json.loads((target / "manifest.json").read_text())
    (target / "manifest.json").write_text(json.dumps({**manifest, "scenes_of": "target_train"}))
    args = stage_args(root, params_path)
    args[args.index("--target-bank") + 1], args[args.index("--split") + 1] = str(tmp_path / "target"), "target_train"
    with pytest.raises(DataError, match="holds the scenes of 'target_train', not of test"):
        _load_stage("adapt_taxonomy").main(args)


def test_the_stage_says_it_in_one_line(pipeline, tmp_path):
    root, params_path, _ = pipeline
    args = stage_args(root, params_path)
    args[args.index("--pixels") + 1] = str(tmp_path / "no-pixels")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "adapt_taxonomy.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "no-pixels/losses.npz: missing; it is written by stage pixels" in lines[0]
