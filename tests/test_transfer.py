"""Transfers: the cached engine on a tiny fake bank, its agreement with the naive per-pair loop, frozen
encoders, item order, executors (forked workers, Ray), and one-line errors of the stages."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fake_bank import fake_split
from taskonomy.transfer import engine as T
from taskonomy.config import TrainTaskParams, TransferParams
from taskonomy.transfer.executors import ExecutorSpec
from taskonomy.nets.models import build_encoder
from taskonomy.transfer.naive import naive_transfer

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["rgb2depth", "denoise", "class_scene", "fix_pose", "ego_motion"]
NET = TrainTaskParams(width=4, head_width=8, bottleneck_channels=4, bottleneck_stride=4)
PARAMS = TransferParams(epochs=1, batch_size=8, lr=3e-3)
# The engine and the naive loop share seeds, data order and initialisation; only float32 reassociation
# (encoder batch sizes) can separate them, and it stays far below this on a few SGD steps.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def splits():
    torch.set_num_threads(1)
    return {s: fake_split(s, n_scenes=4, resolution=16) for s in ("train", "transfer", "test")}


@pytest.fixture(scope="module")
def targets(splits):
    return T.load_targets(splits, TARGETS)


def encoder(seed: int):
    torch.manual_seed(seed)
    return build_encoder(NET).eval()


@pytest.fixture(scope="module")
def all_pairs(targets):
    """Two sources (one stands in for a trained network, one for ``random``) into every target."""
    sources = {"edge2d": encoder(1), "random": encoder(2)}
    reps = {s: T.encode_source(e, targets) for s, e in sources.items()}
    context = T.TransferContext(reps, T.strip_views(targets), PARAMS, NET)
    jobs = [((s,), t) for s in sources for t in TARGETS]
    return sources, context, jobs, T.run_transfers(context, jobs, ExecutorSpec(threads=1))


def test_all_pairs_give_one_finite_loss_per_test_item(all_pairs, splits):
    sources, _, _, losses = all_pairs
    expected = {"rgb2depth": 16, "denoise": 16, "class_scene": 16,
                "fix_pose": len(splits["test"]["fix_pose_index"]), "ego_motion": len(splits["test"]["ego_motion_index"])}
    assert set(losses) == set(TARGETS)
    for target, per_source in losses.items():
        assert set(per_source) == set(sources)
        for values in per_source.values():
            assert values.dtype == np.float32 and values.shape == (expected[target],)
            assert np.all(np.isfinite(values)) and np.all(values >= 0)
    # Different representations give different readouts.
    assert not np.array_equal(losses["rgb2depth"]["edge2d"], losses["rgb2depth"]["random"])


def test_targets_of_a_split_share_their_inputs_and_load_as_alone(targets, splits):
    depth, scene, noisy = (targets[t]["test"] for t in ("rgb2depth", "class_scene", "denoise"))
    assert depth.views.data_ptr() == scene.views.data_ptr()        # one conversion of the images per split
    assert noisy.views.data_ptr() != depth.views.data_ptr()        # another input transform: its own
    for target in ("class_scene", "denoise"):
        alone = T.load_targets(splits, [target])[target]
        for split in ("transfer", "test"):
            assert torch.equal(alone[split].views, targets[target][split].views)
            assert torch.equal(alone[split].target, targets[target][split].target)


def test_test_items_follow_the_bank_order_for_every_transfer(targets, splits):
    test = splits["test"]
    assert torch.equal(targets["fix_pose"]["test"].index, torch.from_numpy(test["fix_pose_index"]))
    assert torch.equal(targets["ego_motion"]["test"].index, torch.from_numpy(test["ego_motion_index"]))
    assert torch.equal(targets["rgb2depth"]["test"].index[:, 0], torch.arange(test.n_views))
    # Higher orders read the same test data: their per-item losses line up with first order's.
    reps = {"a": T.encode_source(encoder(1), targets), "b": T.encode_source(encoder(2), targets)}
    context = T.TransferContext(reps, T.strip_views(targets), PARAMS, NET)
    out = T.run_transfers(context, [(("a", "b"), "fix_pose"), (("a",), "fix_pose")], ExecutorSpec(threads=1))
    assert out["fix_pose"]["a__b"].shape == out["fix_pose"]["a"].shape == (len(test["fix_pose_index"]),)


@pytest.mark.parametrize("target", ["rgb2depth", "fix_pose"])
def test_engine_agrees_with_the_naive_loop_and_encoders_stay_frozen(all_pairs, splits, target):
    sources, _, _, losses = all_pairs
    source = "edge2d"
    net = sources[source]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    naive = naive_transfer(splits, net, source, target, PARAMS, NET)
    engine = losses[target][source]
    assert naive.shape == engine.shape
    assert np.abs(naive - engine).max() <= TOLERANCE * np.abs(engine).mean()
    # The naive loop trains with the encoder inside the model (BatchNorm in its forward): weights and
    # running statistics must not move.
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_forked_workers_match_one_process(all_pairs):
    _, context, jobs, losses = all_pairs
    forked = T.run_transfers(context, jobs[:4], ExecutorSpec(workers=2, threads=1))
    for (sources, target) in jobs[:4]:
        np.testing.assert_array_equal(forked[target][sources[0]], losses[target][sources[0]])


def test_pixels_baseline(targets):
    context = T.TransferContext({}, targets, PARAMS, NET)
    out = T.run_transfers(context, [((T.PIXELS,), "rgb2depth"), ((T.PIXELS,), "class_scene")], ExecutorSpec(threads=1))
    assert out["rgb2depth"][T.PIXELS].shape == (16,) and np.all(np.isfinite(out["class_scene"][T.PIXELS]))


def test_reps_roundtrip_exactly_and_read_out_as_in_the_stage(tmp_path, targets):
    reps = T.encode_source(encoder(1), targets)
    T.save_reps(tmp_path / "reps.npz", reps)
    back = T.load_reps(tmp_path / "reps.npz", "edge2d")
    assert set(back) == {"transfer/plain", "test/plain", "transfer/noisy", "test/noisy"}
    for key, value in reps.items():
        assert back[key].dtype == torch.float32 and torch.equal(back[key], value)  # (V, C, h, w)
    # transfer_high and benchmarks/readouts.py read the cache: the same readout gives the same losses
    jobs = [(("edge2d",), "rgb2depth"), (("edge2d",), "fix_pose")]
    run = lambda r: T.run_transfers(T.TransferContext({"edge2d": r}, T.strip_views(targets), PARAMS, NET),  # noqa: E731
                                    jobs, ExecutorSpec(threads=1))
    fresh, cached = run(reps), run(back)
    for _, target in jobs:
        assert np.array_equal(fresh[target]["edge2d"], cached[target]["edge2d"])
    # standardised per channel on the transfer split
    flat = reps["transfer/plain"].transpose(0, 1).flatten(1)  # (C, V*h*w)
    live = flat.std(1) > 0
    assert torch.allclose(flat.mean(1), torch.zeros(flat.shape[0]), atol=1e-4)
    assert torch.allclose(flat[live].std(1, unbiased=False), torch.ones(int(live.sum())), atol=1e-3)


# --------------------------------------------------------------------------------------------------
# Stages: bad input is exit code 2 and one line
# --------------------------------------------------------------------------------------------------

def run_stage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_missing_source_network(tmp_path):
    result = run_stage("stages/transfer.py", "edge2d", "--models", str(tmp_path / "models"),
                       "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "models/edge2d/model.pt" in lines[0] and "train_task@edge2d" in lines[0]


def _table(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    path.write_text("target,sources,order,affinity,quality,gain,mean_loss\n"
                    + "".join(f"{t},{s},1,{a},0.5,0.5,1.0\n" for t, s, a in rows))
    return path


def test_target_without_source(tmp_path):
    table = _table(tmp_path / "aff.csv", [("rgb2depth", "self", 0.5), ("rgb2depth", "random", 0.2),
                                          ("rgb2depth", "rgb2depth", 0.3)])
    result = run_stage("stages/transfer_high.py", "rgb2depth", "--affinities", str(table),
                       "--reps", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rgb2depth: no eligible first-order source" in lines[0]


def test_order_larger_than_sources(tmp_path):
    table = _table(tmp_path / "aff.csv", [("rgb2depth", "edge2d", 0.5), ("rgb2depth", "reshade", 0.3)])
    result = run_stage("stages/transfer_high.py", "rgb2depth", "--affinities", str(table),
                       "--reps", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "order 3 requested but only 2 sources" in lines[0]


def test_source_only_target_is_refused(tmp_path):
    result = run_stage("stages/transfer_high.py", "jigsaw", "--affinities", str(tmp_path / "none.csv"),
                       "--reps", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tasks.jigsaw: is source_only" in lines[0]


def test_first_order_only_writes_an_empty_result_per_target(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["transfer"]["max_order"] = 1
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    result = run_stage("stages/transfer_high.py", "--affinities", str(tmp_path / "none.csv"), "--reps", str(tmp_path),
                       "--out", str(tmp_path / "out"), "--params", str(params))
    assert result.returncode == 0, result.stderr
    targets = [t for t, spec in raw["tasks"].items() if not spec["source_only"]]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(targets)
    for t in targets:
        with np.load(tmp_path / "out" / t / "losses.npz") as z:
            assert z.files == []


def test_transfer_epoch_items_reach_the_readout_loop():
    """transfer.epoch_items: each readout epoch trains on a fresh subset of that many items."""
    loop = T.loop_config(TransferParams(epoch_items=600), "rgb2depth", "cpu")
    assert loop.epoch_items == 600
    assert loop.items_per_epoch(2400) == 600 and loop.items_per_epoch(300) == 300
    assert T.loop_config(TransferParams(), "rgb2depth", "cpu").items_per_epoch(2400) == 2400


SEEDED = ["rgb2depth", "class_scene", "fix_pose"]     # a dense decoder, an FC head with dropout, a pair task


@pytest.fixture(scope="module")
def seeded_runs(targets):
    """Three seeds of three transfers: one executor map (the CPU's way) and one batched model per transfer."""
    from dataclasses import replace

    reps = {"edge2d": T.encode_source(encoder(1), targets)}
    jobs = [(("edge2d",), t) for t in SEEDED]
    runs = {}
    for mode in ("off", "on"):
        params = replace(PARAMS, seeds=3, epochs=2, batch_seeds=mode)
        context = T.TransferContext(reps, T.strip_views(targets), params, NET)
        runs[mode] = T.run_seeded(context, jobs, ExecutorSpec(threads=1), keep=True)
    return reps, jobs, runs


def test_seeds_in_one_map_equal_one_map_per_seed(seeded_runs, targets):
    """Every (job, seed) in one executor map gives the readouts the seed-by-seed loop gave, bit for bit."""
    from dataclasses import replace

    reps, jobs, runs = seeded_runs
    for k in range(3):
        params = replace(PARAMS, seeds=3, epochs=2, seed=PARAMS.seed + k)
        alone = T.run_transfers(T.TransferContext(reps, T.strip_views(targets), params, NET), jobs, ExecutorSpec(threads=1))
        for _, t in jobs:
            np.testing.assert_array_equal(runs["off"][k][t]["edge2d"].losses, alone[t]["edge2d"])


def test_batched_seeds_train_what_separate_seeds_train(seeded_runs, targets):
    """The seeds trained as one vmapped model: each seed's readout starts from its own weights and sees
    its own batches, so without dropout its losses equal the separate run's up to float reassociation
    (BatchNorm's batch statistics included); the FC head's dropout draws other masks, so there only the
    mean loss agrees. Tolerances: 1e-3 of the mean loss per item without dropout, 5% of the mean with it."""
    _, _, runs = seeded_runs
    for k in range(3):
        sep, bat = runs["off"][k]["rgb2depth"]["edge2d"].losses, runs["on"][k]["rgb2depth"]["edge2d"].losses
        assert np.abs(sep - bat).max() <= 1e-3 * sep.mean()
        for t in ("class_scene", "fix_pose"):
            sep, bat = runs["off"][k][t]["edge2d"].losses, runs["on"][k][t]["edge2d"].losses
            assert abs(sep.mean() - bat.mean()) <= 0.05 * sep.mean()
    seeds = [runs["on"][k]["rgb2depth"]["edge2d"].losses for k in range(3)]
    assert not np.array_equal(seeds[0], seeds[1])                     # three readouts, not one three times


def test_batched_readouts_are_kept_per_seed(seeded_runs, targets):
    """Each seed's kept record rebuilds into a readout that gives its losses again (rescoring reads them)."""
    from dataclasses import replace

    from taskonomy.nets.train import evaluate_per_item

    reps, _, runs = seeded_runs
    context = T.TransferContext(reps, T.strip_views(targets), replace(PARAMS, seeds=3, epochs=2), NET)
    task, _, test, *_ = T._readout_data(context, ("edge2d",), "rgb2depth")
    for k in range(3):
        result = runs["on"][k]["rgb2depth"]["edge2d"]
        r = result.record
        model = T.build_readout(("edge2d",), task, r["in_channels"], r["width"], r["rep_hw"], PARAMS, NET)
        model.load_state_dict(r["state"])
        np.testing.assert_array_equal(evaluate_per_item(model, test, T.TaskLoss(task)), result.losses)


def test_seeds_batch_on_cuda_by_default_and_never_with_clipping():
    from taskonomy.transfer.stacked import batches_seeds

    assert not batches_seeds("auto", "cpu", 3, 0.0) and batches_seeds("on", "cpu", 3, 0.0)
    assert not batches_seeds("on", "cpu", 1, 0.0) and not batches_seeds("on", "cpu", 3, 1.0)
    assert not batches_seeds("off", "cpu", 3, 0.0)


def test_non_finite_readout_losses_name_the_transfer_and_the_seed():
    good, bad = T.TrainedReadout(np.ones(3, np.float32)), T.TrainedReadout(np.array([1, np.nan, 2], np.float32))
    done = [((("rgb2depth",), "rgb2mist"), good), ((("rgb2depth", "edge2d"), "rgb2mist"), good)]
    per_target = T._by_target(done)
    assert list(per_target) == ["rgb2mist"] and list(per_target["rgb2mist"]) == ["rgb2depth", "rgb2depth__edge2d"]
    assert T.losses_of(per_target)["rgb2mist"]["rgb2depth"] is good.losses
    with pytest.raises(T.TaskonomyError, match=r"^rgb2depth -> reshade: non-finite test losses$"):
        T._by_target([((("rgb2depth",), "reshade"), bad)])
    with pytest.raises(T.TaskonomyError, match=r"^rgb2depth -> reshade: non-finite test losses \(seed 4\)$"):
        T._by_target([((("rgb2depth",), "reshade"), bad)], seed=4)
