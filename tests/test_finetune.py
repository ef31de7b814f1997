"""Fine-tuning baselines: what trains in each mode, the learning rates, L2-SP, the source roles, the
stored runs, the comparisons and the bad inputs."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_tiny_train_params
from fake_bank import fake_split, write_fake_bank

from taskonomy.stage import timing_notes
from taskonomy.baselines.finetune import (L2SP, SCRATCH, Run, build_network, choose_sources, encoder_blocks,
                                          plan_runs, schedule_loop, subset)
from taskonomy.baselines.finetune_outputs import finetune_target
from taskonomy.baselines.finetune_summary import compare, headline, summarise
from taskonomy.config import FinetuneParams, TrainTaskParams, load_params
from taskonomy.errors import DataError, ParamsError
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.models import build_encoder
from taskonomy.nets.train import LoopConfig, _optimizer, fit, save_checkpoint, task_checkpoint
from taskonomy.tasks import get_task
from taskonomy.transfer.engine import TaskLoss

NET = TrainTaskParams(width=4, head_width=16, epochs=1, batch_size=8)
F = FinetuneParams(targets=["rgb2depth"], sizes=[8, 16], train_items=16, batch_size=8, bootstrap=50)


@pytest.fixture(scope="module")
def data():
    split = fake_split("train", n_scenes=4)
    task = get_task("rgb2depth")
    return load_task_data(split, task, fit_stats(task, split))


def _network(mode, data, f=F, sources=1):
    torch.manual_seed(0)
    encoders = [build_encoder(NET) for _ in range(sources)]
    run = Run(("a",) * sources if mode != SCRATCH else (), mode, 8, 1.0, 0)
    return build_network(run, data.task, encoders, data, f, NET, seed=1, device=torch.device("cpu"))


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("mode", ["frozen", "partial", "full", SCRATCH])
def test_what_trains_in_each_mode(mode, data):
    """Frozen: every encoder weight and BatchNorm statistic bit-equal after training; partial: all but
    the last block's; full and scratch: all of it moves. The new layers always train."""
    network, groups = _network(mode, data)
    encoder = network.encoders[0]
    blocks = encoder_blocks(encoder)
    before = [_state(b) for b in blocks]
    head_before = _state(network.head)
    fit(network, data, TaskLoss(data.task), LoopConfig(epochs=2, batch_size=8, lr=1e-2), name="t", groups=groups)
    same = [all(torch.equal(v, b[k]) for k, v in blk.state_dict().items()) for blk, b in zip(blocks, before)]
    expected = {"frozen": [True] * len(blocks), "partial": [True] * (len(blocks) - 1) + [False]}.get(
        mode, [False] * len(blocks))
    assert same == expected
    assert not all(torch.equal(v, head_before[k]) for k, v in network.head.state_dict().items())
    if mode in ("frozen", "partial"):
        assert all(not m.training for m in network.fixed)          # BatchNorm of fixed blocks in eval mode


def test_partial_blocks_counts_from_the_top(data):
    network, _ = _network("partial", data, dataclasses.replace(F, partial_blocks=2))
    blocks = encoder_blocks(network.encoders[0])
    trainable = [any(p.requires_grad for p in b.parameters()) for b in blocks]
    assert trainable == [False] * (len(blocks) - 2) + [True, True]


@pytest.mark.parametrize("mode, scale", [("full", 0.1), ("partial", 0.1), (SCRATCH, 1.0)])
def test_parameter_groups_get_their_learning_rates(mode, scale, data):
    network, groups = _network(mode, data)
    optimizer = _optimizer(network, LoopConfig(epochs=1, batch_size=8, lr=0.02), groups)
    rates = [g["lr"] for g in optimizer.param_groups]
    assert rates == pytest.approx([0.02, 0.02 * scale])
    new, encoder = ({id(p) for p in g["params"]} for g in optimizer.param_groups)
    assert new == {id(p) for p in network.new_layers()}
    assert encoder == {id(p) for p in network.encoders.parameters() if p.requires_grad}
    frozen, frozen_groups = _network("frozen", data)
    assert len(_optimizer(frozen, LoopConfig(epochs=1, batch_size=8, lr=0.02), frozen_groups).param_groups) == 1


def test_l2sp_is_zero_at_the_pretrained_weights_and_pulls_back(data):
    network, groups = _network("l2sp", data)
    penalty = L2SP(network, alpha=0.5, beta=0.0)
    assert penalty().item() == 0.0
    weight = next(network.encoders.parameters())
    anchor = weight.detach().clone()
    with torch.no_grad():
        weight.add_(0.3)
    assert penalty().item() == pytest.approx(0.5 * 0.5 * 0.09 * weight.numel(), rel=1e-5)
    penalty().backward()
    assert torch.allclose(weight.grad, 0.5 * (weight.detach() - anchor))   # alpha (w - w0)
    optimizer = torch.optim.SGD([weight], lr=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        penalty().backward()
        optimizer.step()
    assert (weight.detach() - anchor).abs().max() < 0.3 * 0.8 ** 10
    new = L2SP(network, alpha=0.0, beta=2.0)
    assert new().item() == pytest.approx(sum((p ** 2).sum().item() for p in network.new_layers() if p.dim() > 1))


def test_multi_source_network_concatenates_encoders(data):
    network, _ = _network("full", data, sources=2)
    x = data.batch(torch.arange(4)).x
    assert network.trunk.bn_in.num_features == 2 * NET.bottleneck_channels
    assert network(x).shape == data.batch(torch.arange(4)).y.shape


FIRST = pd.DataFrame({"rgb2depth": [0.9, 0.5, 0.1, 0.05], "class_scene": [0.2, 0.3, 0.6, 0.01]},
                     index=["rgb2depth", "rgb2sfnorm", "edge2d", "random"])


def test_roles_read_the_taxonomy_and_the_first_order_affinities():
    solution = {"status": "optimal", "supervised": ["class_scene", "rgb2sfnorm"],
                "transfers": {"rgb2depth": ["rgb2sfnorm", "edge2d"]}}
    roles = ["taxonomy", "best", "worst", "random"]
    depth = choose_sources("rgb2depth", roles, solution, FIRST)
    assert depth == {"taxonomy": (("rgb2sfnorm", "edge2d"), ""), "best": (("rgb2sfnorm",), ""),
                     "worst": (("edge2d",), ""), "random": (("random",), "")}      # itself and random left out
    scene = choose_sources("class_scene", roles, solution, FIRST)
    assert scene["taxonomy"] == (None, "supervised by the taxonomy: no source chosen")
    assert scene["best"] == (("edge2d",), "") and scene["worst"] == (("rgb2depth",), "")
    assert choose_sources("class_scene", ["taxonomy"], {"supervised": [], "transfers": {}}, FIRST)["taxonomy"][0] is None


def test_runs_are_planned_once_per_source_set_and_schedules_fix_the_items_seen():
    chosen = {"taxonomy": (("a",), ""), "best": (("a",), ""), "worst": (("b",), ""), "random": (("random",), "")}
    f = dataclasses.replace(F, modes=["frozen", "full"], sizes=[8, 64], scratch_schedules=[1.0, 3.0], seeds=[0, 1])
    runs = plan_runs(chosen, f)
    assert len(runs) == len(set(runs)) == 2 * 2 * (3 * 2 + 2)
    assert {r.sources for r in runs} == {("a",), ("b",), ("random",), ()}
    small, large = schedule_loop(f, Run(("a",), "full", 8, 1.0, 0), 0, "cpu"), \
        schedule_loop(f, Run((), SCRATCH, 64, 3.0, 0), 0, "cpu")
    assert (small.epochs, small.epoch_items) == (2, 0)                  # 16 items seen: 2 epochs of 8
    assert (large.epochs, large.epoch_items) == (1, 48)                 # 3 x 16 items of 64
    assert schedule_loop(f, Run(("a",), "l2sp", 8, 1.0, 0), 0, "cpu").weight_decay == 0.0


def test_sizes_are_nested_subsets(data):
    small, large = subset(data, 8, 0, "rgb2depth"), subset(data, 16, 0, "rgb2depth")
    assert torch.equal(small.index, large.index[:8]) and torch.equal(small.target, large.target[:8])
    assert not torch.equal(subset(data, 8, 1, "rgb2depth").index, small.index)
    with pytest.raises(ParamsError, match="finetune.sizes: 999 items, but rgb2depth's split has"):
        subset(data, 999, 0, "rgb2depth")


def test_compare_reports_win_rate_and_interval():
    rng = np.random.default_rng(0)
    b = rng.gamma(2.0, 1.0, 400)
    better = b - 0.3 + rng.normal(0, 0.05, 400)
    c = compare(better, b, rounds=500, seed=0)
    assert c["win"] > 0.95 and c["lo"] <= c["diff"] <= c["hi"] < 0
    noise = compare(b + rng.normal(0, 0.5, 400), b, rounds=500, seed=0)
    assert noise["lo"] < 0 < noise["hi"]
    same = compare(b, b, rounds=50, seed=0)
    assert same == {"win": 0.0, "diff": 0.0, "lo": 0.0, "hi": 0.0}


# --- the stage's work on a fake bank ----------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake bank, three source checkpoints, a taxonomy solution and first-order affinities."""
    root = tmp_path_factory.mktemp("finetune")
    bank = write_fake_bank(root / "bank", {"train": 4, "transfer": 2, "test": 2})
    raw = yaml.safe_load(write_tiny_train_params(root / "base.yaml", threads=1).read_text())
    raw["taxonomy"].update(budgets=[1, 2], max_orders=[1])
    raw["multitask"].update(budget=1, max_order=1)
    raw["finetune"] = {"targets": ["rgb2depth", "class_scene"], "roles": ["taxonomy", "best", "worst", "random"],
                       "modes": ["frozen", "full"], "sizes": [8, 16], "train_items": 16, "batch_size": 8,
                       "scratch_schedules": [1.0, 2.0], "budget": 1, "max_order": 1, "bootstrap": 50, "workers": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(root / "params.yaml")
    for name in ("rgb2sfnorm", "edge2d", "random"):
        torch.manual_seed(len(name))
        encoder = build_encoder(params.train_task)
        path = root / "models" / name / "model.pt"
        path.parent.mkdir(parents=True)
        save_checkpoint(path, task_checkpoint(get_task(name), params.train_task, encoder=encoder))
    (root / "tax").mkdir()
    (root / "tax" / "b1_k1.json").write_text(json.dumps(
        {"status": "optimal", "supervised": ["class_scene"], "transfers": {"rgb2depth": ["rgb2sfnorm"]}}))
    (root / "tax" / "b2_k1.json").write_text(json.dumps({"status": "infeasible", "supervised": [], "transfers": {}}))
    FIRST.loc[["rgb2sfnorm", "edge2d", "random"]].to_csv(root / "first.csv")
    return root, bank, params


def _run(setup, target="rgb2depth", params=None, out="out"):
    root, bank, base = setup
    finetune_target(target, params or base, bank, root / "models", root / "tax", root / "first.csv", root / out / target)
    return root / out / target


def test_stage_trains_every_run_once_and_reuses_stored_runs(setup):
    out = _run(setup)
    rows = pd.read_csv(out / "runs.csv", dtype={"sources": str})
    assert set(rows.role) == {"taxonomy", "best", "worst", "random", SCRATCH}
    assert set(rows[rows.role == "taxonomy"].sources) == set(rows[rows.role == "best"].sources) == {"rgb2sfnorm"}
    metrics = json.loads((out / "metrics.json").read_text())
    # 3 source sets x 2 modes x 2 sizes + 2 schedules x 2 sizes
    assert metrics["runs"] == timing_notes()["trained"] == 16 and timing_notes()["reused"] == 0
    written = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with np.load(out / "losses.npz") as z:
        first = {k: z[k].copy() for k in z.files}
    assert set(first) == set(rows.label.dropna()) and len({v.shape for v in first.values()}) == 1
    out = _run(setup)
    assert timing_notes()["trained"] == 0 and timing_notes()["reused"] == 16
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == written     # resumed: the same bytes
    with np.load(out / "losses.npz") as z:
        assert all(np.array_equal(z[k], first[k]) for k in first)
    again = _run(setup, out="fresh")                              # trained afresh: the same numbers
    with np.load(again / "losses.npz") as z:
        assert all(np.array_equal(z[k], first[k]) for k in first)


def test_a_supervised_target_says_so_and_the_summary_compares(setup):
    root, _, params = setup
    _run(setup)
    out = _run(setup, "class_scene")
    rows = pd.read_csv(out / "runs.csv", dtype={"sources": str, "note": str})
    tax = rows[rows.role == "taxonomy"]
    assert len(tax) == 1 and tax.note.iloc[0] == "supervised by the taxonomy: no source chosen"
    table, findings = summarise(params, root / "out", rounds=50)
    runs = [r for r in table if r["mode"]]
    vs_scratch = [r for r in runs if not (r["mode"] == SCRATCH and float(r["schedule"]) == 1.0)]
    assert all(0 <= r["win_vs_scratch"] <= 1 and r["diff_vs_scratch_lo"] <= r["diff_vs_scratch"] + 1e-12
               for r in vs_scratch)
    full = [r for r in runs if r["mode"] == "full"]
    assert full and all(not math.isnan(r["diff_vs_frozen"]) for r in full)
    assert findings["class_scene"].startswith("class_scene: the taxonomy chose no source")
    assert "differences are its test loss minus the other's" in findings["rgb2depth"]
    assert "scratch" in findings["rgb2depth"]
    # the DVC metrics: per target at its smallest size (1x), each role's best mode, seed mean
    metrics = headline(runs)["finetune"]
    smallest = min(int(r["items"]) for r in runs if r["target"] == "rgb2depth")
    for role, loss in metrics["rgb2depth"].items():
        if role == "win_vs_scratch":
            continue
        by_mode = {}
        for r in runs:
            if r["target"] == "rgb2depth" and r["role"] == role and int(r["items"]) == smallest \
                    and float(r["schedule"]) == 1.0:
                by_mode.setdefault(r["mode"], []).append(float(r["mean_loss"]))
        assert loss == pytest.approx(min(np.mean(v) for v in by_mode.values()), rel=1e-5)
    assert "scratch" in metrics["rgb2depth"] and 0 <= metrics["rgb2depth"]["win_vs_scratch"] <= 1


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.update(budget=2), "b2_k1.json: the taxonomy has no solution at finetune.budget"),
    (lambda f: f.update(sizes=[8, 5000]), "finetune.sizes: 5000 items, but rgb2depth's train split has"),
    (lambda f: f.update(targets=["class_scene"]), "finetune.targets: 'rgb2depth' is not listed"),
])
def test_bad_input_stops_before_training(setup, edit, message):
    root, _, params = setup
    f = dataclasses.asdict(params.finetune)
    edit(f)
    bad = dataclasses.replace(params, finetune=FinetuneParams(**f))
    with pytest.raises((DataError, ParamsError), match=message):
        _run(setup, params=bad, out="bad")
    assert not (root / "bad" / "rgb2depth" / "runs").exists()


def test_another_tasks_checkpoint_is_refused(setup):
    root, _, params = setup
    wrong = root / "wrong"
    shutil.copytree(root / "models", wrong)
    shutil.copy(root / "models" / "edge2d" / "model.pt", wrong / "rgb2sfnorm" / "model.pt")
    with pytest.raises(DataError, match="a checkpoint of task 'edge2d', not of 'rgb2sfnorm'"):
        finetune_target("rgb2depth", params, setup[1], wrong, root / "tax", root / "first.csv", root / "w" / "rgb2depth")
