"""Multi-task baselines: the weightings, the groupings, TAG's probe, Delta_p, the stage's runs and the
bad inputs."""
from __future__ import annotations

import builtins
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_tiny_train_params
from fake_bank import fake_split, write_fake_bank

from taskonomy.stage import timing_notes
from taskonomy.baselines import multitask as mt
from taskonomy.baselines.multitask import (DWAWeighting, FixedWeighting, MultiTaskData, MultiTaskLoss, TagProbe,
                                           UncertaintyWeighting, build_network, make_groups, make_weighting,
                                           random_groups, taxonomy_groups)
from taskonomy.baselines.multitask_outputs import multitask_grouping, studied_tasks
from taskonomy.baselines.multitask_summary import delta_p, delta_p_interval, write_summary
from taskonomy.config import MultitaskParams, TrainTaskParams, load_params
from taskonomy.errors import ParamsError
from taskonomy.losses import write_self
from taskonomy.nets.data import fit_stats, load_task_data
from taskonomy.nets.train import LoopConfig, fit
from taskonomy.tasks import get_task

NET = TrainTaskParams(width=4, head_width=16, epochs=1, batch_size=8)
TASKS = ("rgb2depth", "segmentsemantic", "class_scene")


@pytest.fixture(scope="module")
def data():
    split, shared = fake_split("train", n_scenes=4), {}
    parts = []
    for name in TASKS:
        task = get_task(name)
        parts.append(load_task_data(split, task, fit_stats(task, split), shared))
    return MultiTaskData(tuple(parts))


def _network(data, weighting, seed=0):
    return build_network(data.tasks, weighting, NET, data.resolution, seed)


def _encoder_grads(network, data, weighting=None, task=None):
    """The encoder's gradient after one backward on a batch: through the weighting, or of one task alone."""
    network.train()
    network.zero_grad(set_to_none=True)
    batch = data.batch(torch.arange(8))
    losses = MultiTaskLoss(data.tasks)(network(batch.x), batch).mean(0)
    if task is None:
        network.backward(losses)
    else:
        losses[task].backward()
    return [p.grad.clone() for p in network.encoder.parameters()]


# --- weightings ------------------------------------------------------------------------------------

def test_weights_sum_to_one_and_stay_positive():
    assert torch.allclose(FixedWeighting([1, 1, 1, 1]).weights(), torch.full((4,), 0.25))
    w = FixedWeighting([2.0, 0.0, 6.0]).weights()
    assert torch.allclose(w, torch.tensor([0.25, 0.0, 0.75]))
    u = UncertaintyWeighting(3)
    with torch.no_grad():
        u.log_var.copy_(torch.tensor([-2.0, 0.0, 5.0]))
    assert u.weights().sum() == pytest.approx(1.0) and (u.weights() > 0).all()
    assert u.weights()[0] > u.weights()[1] > u.weights()[2]            # low variance, high weight
    dwa = DWAWeighting(2, temperature=2.0, period=2)
    for step in range(8):      # task 0's loss halves every period, task 1's stays: task 1 gains weight
        dwa.objective(torch.tensor([0.5 ** (step // 2), 1.0]))
        assert dwa.weights().sum() == pytest.approx(1.0) and (dwa.weights() > 0).all()
    assert dwa.weights()[1] > 0.5 > dwa.weights()[0]
    expected = torch.softmax(torch.tensor([0.5, 1.0]) / 2.0, 0)
    assert torch.allclose(dwa.weights(), expected)


@pytest.mark.parametrize("bad", [[0.0, 0.0], [1.0, -1.0]])
def test_fixed_weights_must_sum_to_a_positive_number(bad):
    with pytest.raises(ParamsError, match="multitask.weights: must be >= 0 and sum to a positive number"):
        FixedWeighting(bad)


def test_a_task_with_weight_zero_leaves_the_encoder_gradient_unchanged(data):
    """w = (1, 0, 0): the shared encoder's gradient is task 0's alone, bit for bit in direction and size."""
    torch.manual_seed(0)
    network = _network(data, FixedWeighting([1.0, 0.0, 0.0]))
    weighted = _encoder_grads(network, data)
    alone = _encoder_grads(network, data, task=0)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(weighted, alone))
    both = _encoder_grads(_network(data, FixedWeighting([1.0, 1.0, 0.0])), data)
    assert not all(torch.allclose(a, b, atol=1e-7) for a, b in zip(both, alone))


def test_uncertainty_log_variances_get_gradients(data):
    network = _network(data, UncertaintyWeighting(3)).train()
    batch = data.batch(torch.arange(8))
    losses = MultiTaskLoss(data.tasks)(network(batch.x), batch).mean(0)
    network.backward(losses)
    grad = network.weighting.log_var.grad
    assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all()
    assert all(p.grad is not None for p in network.encoder.parameters())
    # d/ds (exp(-s) L + s) = 1 - L at s = 0
    assert torch.allclose(grad, 1 - losses.detach(), atol=1e-5)


def test_uncertainty_weighting_learns_in_the_training_loop(data):
    network = _network(data, UncertaintyWeighting(3))
    loop = LoopConfig(epochs=2, batch_size=8, lr=0.05)
    fit(network, data, MultiTaskLoss(data.tasks), loop, name="mt", backward=network.backward)
    assert not torch.equal(network.weighting.log_var.detach(), torch.zeros(3))


def test_jacobian_aggregators_from_torchjd(data):
    pytest.importorskip("torchjd")
    for name in ("upgrad", "mgda"):
        network = _network(data, make_weighting(name, TASKS, MultitaskParams()))
        grads = _encoder_grads(network, data)
        assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
        assert all(p.grad is not None for h in network.heads.values() for p in h.parameters())
        w = network.weighting.weights()
        assert w.sum() == pytest.approx(1.0, abs=1e-5) and (w >= -1e-6).all()


def test_a_missing_library_is_one_line(monkeypatch):
    real = builtins.__import__

    def no_torchjd(name, *args, **kwargs):
        if name.startswith("torchjd"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchjd)
    with pytest.raises(ParamsError, match=r"multitask.weightings: 'upgrad' needs the torchjd library.*taskonomy\[mtl\]"):
        make_weighting("upgrad", TASKS, MultitaskParams())
    with pytest.raises(ParamsError, match="multitask.weightings: unknown 'gradnorm2'"):
        make_weighting("gradnorm2", TASKS, MultitaskParams())


# --- groupings ------------------------------------------------------------------------------------

SOLUTION = {"status": "optimal", "supervised": ["rgb2sfnorm", "edge2d", "autoencoder"],
            "transfers": {"rgb2depth": ["rgb2sfnorm"], "segmentsemantic": ["rgb2sfnorm", "edge2d"],
                          "keypoint2d": ["edge2d"], "class_scene": ["autoencoder"], "room_layout": ["rgb2sfnorm"]}}


def test_taxonomy_groups_from_a_known_solution():
    tasks = ["rgb2depth", "rgb2sfnorm", "segmentsemantic", "edge2d", "keypoint2d", "class_scene", "vanishing_point"]
    groups = taxonomy_groups(SOLUTION, tasks)
    # the first source of a chosen set; autoencoder is not studied, so class_scene is alone; vanishing_point
    # is not in the solution: alone
    assert groups == [("rgb2depth", "rgb2sfnorm", "segmentsemantic"), ("edge2d", "keypoint2d"), ("class_scene",),
                      ("vanishing_point",)]


def test_random_groups_have_the_taxonomy_sizes_and_follow_the_seed():
    m = MultitaskParams(tasks=["rgb2depth", "rgb2sfnorm", "segmentsemantic", "edge2d", "keypoint2d", "class_scene"])
    tax = make_groups("taxonomy", m, SOLUTION, 0)
    draws = [make_groups("random", m, SOLUTION, s) for s in range(6)]
    for groups in draws:
        assert sorted(map(len, groups)) == sorted(map(len, tax)) and groups != tax     # never the taxonomy's own
        assert sorted(t for g in groups for t in g) == sorted(m.tasks)
    assert draws[0] == make_groups("random", m, SOLUTION, 0)
    assert len({tuple(g) for g in draws}) > 1
    assert random_groups([2, 1], ["a", "b", "c"], 3) == random_groups([2, 1], ["a", "b", "c"], 3)
    assert {tuple(random_groups([2, 1], ["a", "b", "c"], s, avoid=[("a", "b"), ("c",)])) for s in range(20)} == {
        (("a", "c"), ("b",)), (("a",), ("b", "c"))}
    assert random_groups([3], ["a", "b", "c"], 0, avoid=[("a", "b", "c")]) == [("a", "b", "c")]   # nothing else
    assert make_groups("all", m, None, 0) == [tuple(m.tasks)]
    assert make_groups("single", m, None, 0) == [(t,) for t in m.tasks]
    custom = MultitaskParams(tasks=m.tasks, custom={"mine": [["edge2d", "rgb2depth"]]})
    assert make_groups("mine", custom, None, 0)[0] == ("rgb2depth", "edge2d")
    with pytest.raises(ParamsError, match="multitask.groupings: unknown grouping 'theirs'"):
        make_groups("theirs", custom, None, 0)


def test_tasks_that_cannot_share_one_image_are_left_out_with_the_reason(tmp_path):
    raw = yaml.safe_load(write_tiny_train_params(tmp_path / "p.yaml", threads=1).read_text())
    raw["multitask"]["tasks"] = ["rgb2depth", "class_scene", "fix_pose", "denoise"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    tasks, left_out = studied_tasks(load_params(tmp_path / "p.yaml"))
    assert tasks == ["rgb2depth", "class_scene"]
    assert "2-view tuples" in left_out["fix_pose"] and "noisy image" in left_out["denoise"]


def test_multitask_data_refuses_tasks_with_other_inputs():
    split = fake_split("train", n_scenes=2)
    a, b = get_task("rgb2depth"), get_task("denoise")
    with pytest.raises(ValueError, match="denoise: its inputs differ"):
        MultiTaskData((load_task_data(split, a, fit_stats(a, split)), load_task_data(split, b, fit_stats(b, split))))


# --- the loop and TAG ------------------------------------------------------------------------------

def test_tag_probe_measures_without_changing_training(data):
    """The same run with and without the probe ends with bit-identical weights; the probe's affinity
    is finite and a task's step on its own loss lowers that loss on average (positive diagonal)."""
    loop = LoopConfig(epochs=2, batch_size=8, lr=0.01)
    loss = MultiTaskLoss(data.tasks)
    plain = _network(data, FixedWeighting([1, 1, 1]))
    fit(plain, data, loss, loop, name="plain", backward=plain.backward)
    probed = _network(data, FixedWeighting([1, 1, 1]))
    probe = TagProbe(probed, loss, every=1)
    fit(probed, data, loss, loop, name="probed", backward=probed.backward, on_step=probe)
    for (k, a), b in zip(plain.state_dict().items(), probed.state_dict().values()):
        assert torch.equal(a, b), k
    z = probe.affinity
    assert probe.count > 0 and z.shape == (3, 3) and np.isfinite(z).all()
    assert np.diag(z).mean() > 0


def test_the_one_training_loop_trains_every_run(monkeypatch, setup):
    calls = []
    real = mt.fit

    def counting(*args, **kwargs):
        calls.append(kwargs["name"])
        assert kwargs["backward"] is not None
        return real(*args, **kwargs)

    monkeypatch.setattr(mt, "fit", counting)
    root, bank, params = setup
    multitask_grouping("all", params, bank, root / "models", root / "tax", root / "loop" / "all")
    assert len(calls) == len(params.multitask.weightings) * len(params.multitask.seeds)


# --- Delta_p -------------------------------------------------------------------------------------

def test_delta_p_on_a_hand_example():
    # task 1: 1.0 -> 0.5 (+50%); task 2: 2.0 -> 2.2 (-10%): mean +20%
    assert delta_p([1.0, 2.0], [0.5, 2.2]) == pytest.approx(20.0)
    assert delta_p([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert delta_p([1.0], [2.0]) == pytest.approx(-100.0)
    rng = np.random.default_rng(0)
    single = rng.gamma(2.0, 1.0, (2, 300))
    better = single * 0.8
    lo, hi = delta_p_interval(single, better, rounds=200, seed=0)
    assert lo == pytest.approx(20.0) and hi == pytest.approx(20.0)   # a uniform 20% gain on every image
    noisy = single * rng.uniform(0.5, 1.5, single.shape)
    lo, hi = delta_p_interval(single, noisy, rounds=200, seed=0)
    point = delta_p(single.mean(1), noisy.mean(1))
    assert lo < point < hi and hi - lo > 1.0
    assert delta_p_interval(single, single, rounds=50, seed=0) == (0.0, 0.0)


# --- the stage on a fake bank --------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake bank, the task networks' test losses (stand-ins), a taxonomy solution, first-order affinities."""
    root = tmp_path_factory.mktemp("multitask")
    bank = write_fake_bank(root / "bank", {"train": 4, "transfer": 2, "test": 2})
    raw = yaml.safe_load(write_tiny_train_params(root / "base.yaml", threads=1).read_text())
    raw["train_task"].update(epochs=1)
    raw["taxonomy"].update(budgets=[1], max_orders=[1])
    raw["finetune"].update(budget=1, max_order=1)
    raw["multitask"] = {"tasks": ["rgb2depth", "rgb2sfnorm", "segmentsemantic", "class_scene", "fix_pose"],
                        "groupings": ["single", "taxonomy", "all", "random"], "weightings": ["equal", "uncertainty"],
                        "seeds": [0, 1], "budget": 1, "max_order": 1, "validation_items": 8, "tag_every": 1,
                        "bootstrap": 50, "workers": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(root / "params.yaml")
    test = fake_split("test", n_scenes=2)
    rng = np.random.default_rng(0)
    for name in ("rgb2depth", "rgb2sfnorm", "segmentsemantic", "class_scene"):
        n = len(load_task_data(test, get_task(name), fit_stats(get_task(name), test)))
        write_self(root / "models" / name / "test_losses.npy", rng.gamma(2.0, 0.5, n).astype(np.float32))
    (root / "tax").mkdir()
    (root / "tax" / "b1_k1.json").write_text(json.dumps(
        {"status": "optimal", "supervised": ["rgb2sfnorm", "class_scene"],
         "transfers": {"rgb2depth": ["rgb2sfnorm"], "segmentsemantic": ["rgb2sfnorm"]}}))
    tasks = ["rgb2depth", "rgb2sfnorm", "segmentsemantic", "class_scene"]
    pd.DataFrame(rng.uniform(0, 1, (4, 4)), index=tasks, columns=tasks).to_csv(root / "first.csv")
    return root, bank, params


def _stage(setup, grouping, out="out", params=None):
    root, bank, base = setup
    multitask_grouping(grouping, params or base, bank, root / "models", root / "tax", root / out / grouping)
    return root / out / grouping


def test_stage_runs_every_grouping_and_reuses_stored_runs(setup):
    root, _, params = setup
    out = _stage(setup, "taxonomy")
    rows = pd.read_csv(out / "runs.csv", keep_default_na=False)
    # taxonomy groups: rgb2depth+rgb2sfnorm+segmentsemantic (trained), class_scene alone (reused)
    assert set(rows.group) == {"rgb2depth+rgb2sfnorm+segmentsemantic", "class_scene"}
    alone = rows[rows.group == "class_scene"]
    assert set(alone.note) == {"a group of one: its task network, reused"}
    assert np.allclose(alone.test_loss, np.load(root / "models/class_scene/test_losses.npy").mean())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["runs"] == timing_notes()["trained"] == 4      # 1 group x 2 weightings x 2 seeds
    written = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with np.load(out / "losses.npz") as z:
        first = {k: z[k].copy() for k in z.files}
    assert set(rows.key) == set(first)
    again = _stage(setup, "taxonomy")
    assert timing_notes()["reused"] == 4
    assert {f.name: f.read_bytes() for f in again.iterdir() if f.is_file()} == written
    fresh = _stage(setup, "taxonomy", out="fresh")                 # trained afresh: the same numbers
    with np.load(fresh / "losses.npz") as z:
        assert all(np.array_equal(z[k], first[k]) for k in first)
    for grouping in ("single", "all", "random"):
        _stage(setup, grouping)
    tag = json.loads((root / "out/all/tag.json").read_text())
    assert set(tag["seeds"]) == {"0", "1"} and np.asarray(tag["seeds"]["0"]["affinity"]).shape == (4, 4)
    random_rows = pd.read_csv(root / "out/random/runs.csv", keep_default_na=False)
    for seed, rows in random_rows.groupby("seed"):
        assert sorted(len(g.split("+")) for g in rows.group.unique()) == [1, 3]

    table = root / "summary.csv"
    record = write_summary(params, root / "out", root / "models", root / "first.csv", table, root / "summary",
                           root / "metrics/multitask.json")
    df = pd.read_csv(table, keep_default_na=False)
    assert set(df.grouping) == {"single", "taxonomy", "all", "random"}
    assert np.allclose(df.rel_improvement, (df.single_loss - df.test_loss) / df.single_loss)
    assert (df[df.grouping == "single"].rel_improvement == 0).all()
    deltas = pd.read_csv(root / "summary/delta.csv")
    single = deltas[deltas.grouping == "single"]
    assert (single.delta_p == 0).all() and (single.delta_p_lo == 0).all()
    for _, d in deltas.iterrows():
        assert d.delta_p_min <= d.delta_p <= d.delta_p_max
        per_seed = [float(v) for v in d.per_seed.split()]
        assert len(per_seed) == d.seeds == 2 and np.mean(per_seed) == pytest.approx(d.delta_p, abs=0.01)
    # by hand for one setting: the mean over seeds of 100 x mean_t (B_t - N_t) / B_t
    for (grouping, weighting), rows in df[df.grouping == "all"].groupby(["grouping", "weighting"]):
        by_seed = rows.groupby("seed").rel_improvement.mean() * 100
        row = deltas[(deltas.grouping == grouping) & (deltas.weighting == weighting)].iloc[0]
        assert row.delta_p == pytest.approx(by_seed.mean(), rel=1e-5)
    assert "fix_pose" in record["left_out"] and record["findings"]
    assert any(line.startswith("equal weighting, the taxonomy's groups against random groups") for line in record["findings"])
    tag_rows = pd.read_csv(root / "summary/tag.csv")
    assert len(tag_rows) == 12 and set(tag_rows.source) == set(tag_rows.target)
    metrics = json.loads((root / "metrics/multitask.json").read_text())["multitask"]
    assert "equal" in metrics["delta_p"]["taxonomy"] and "tag_spearman" in metrics
    assert (root / "summary/multitask.png").stat().st_size > 0

    # the report's section: the protocol, the findings, the left-out task, the figure, Delta_p per setting
    from taskonomy.report.build import multitask_section
    from taskonomy.report.page import Image, Table, Text

    table.rename(root / "multitask.csv")
    (root / "summary").rename(root / "multitask")
    section = multitask_section(root / "multitask.csv", params)
    texts = [b.text for b in section.blocks if isinstance(b, Text)]
    assert all(line in texts for line in record["findings"])
    assert any(t.startswith("Left out: fix_pose: its items are 2-view tuples") for t in texts)
    assert any(isinstance(b, Image) for b in section.blocks)
    delta_rows, task_rows, group_rows = [b.rows for b in section.blocks if isinstance(b, Table)]
    assert {r[:2] for r in task_rows} == set(zip(deltas.grouping, deltas.weighting))
    assert all(len(r) == 2 + 4 for r in task_rows)            # the four studied tasks
    assert {(r[0], r[1]) for r in delta_rows} == set(zip(deltas.grouping, deltas.weighting))
    assert ("taxonomy", 0, "rgb2depth + rgb2sfnorm + segmentsemantic, class_scene") in group_rows
    assert multitask_section(None, params).blocks[0].text.startswith("Not part of this run")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(groupings=["single", "pairs"]), "multitask.groupings: unknown grouping 'pairs'"),
    (lambda m: m.update(custom={"mine": [["rgb2depth", "rgb2dpth"]]}, groupings=["mine"]),
     "multitask.custom.mine: 'rgb2dpth' is not in the task list"),
    (lambda m: m.update(custom={"mine": [["rgb2depth", "jigsaw"]]}, groupings=["mine"]),
     "multitask.custom.mine: 'jigsaw' is source-only"),
    (lambda m: m.update(custom={"mine": [["rgb2depth"], ["rgb2depth", "class_scene"]]}, groupings=["mine"]),
     "multitask.custom.mine: 'rgb2depth' is in two groups"),
    (lambda m: m.update(weightings=["fixed"], weights={"rgb2depth": 0, "rgb2sfnorm": 0, "segmentsemantic": 0,
                                                       "class_scene": 0, "fix_pose": 0}),
     "multitask.weights: they sum to 0"),
    (lambda m: m.update(weights={"rgb2depth": -1.0}), "multitask.weights.rgb2depth: must be >= 0"),
    (lambda m: m.update(tasks=["rgb2depth", "jigsaw"]), "multitask.tasks: 'jigsaw' is source-only"),
    (lambda m: m.update(budget=7), "multitask.budget: 7 is not among taxonomy.budgets"),
    (lambda m: m.update(weightings=["equal", "gradnorm"]), "multitask.weightings: unknown 'gradnorm' \\(known: equal"),
    (lambda m: m.update(weightings=["equal", "equal"]), "multitask.weightings: 'equal' listed twice"),
])
def test_bad_params_are_one_line(tmp_path, setup, edit, message):
    raw = yaml.safe_load((setup[0] / "params.yaml").read_text())
    edit(raw["multitask"])
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=message):
        load_params(tmp_path / "p.yaml")


def test_bad_input_stops_before_training(tmp_path, setup, monkeypatch):
    """A group whose fixed weights sum to 0 and a weighting without its library stop at planning."""
    root, bank, _ = setup
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["multitask"].update(weightings=["fixed"], weights={"rgb2depth": 0, "rgb2sfnorm": 0, "segmentsemantic": 0})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(mt, "fit", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ParamsError, match="group rgb2depth\\+rgb2sfnorm\\+segmentsemantic sum to 0"):
        multitask_grouping("taxonomy", load_params(tmp_path / "p.yaml"), bank, root / "models", root / "tax", tmp_path / "o")
    with pytest.raises(ParamsError, match="multitask.groupings: 'all' is not listed"):
        raw["multitask"].update(weightings=["equal"], groupings=["single"])
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
        multitask_grouping("all", load_params(tmp_path / "p.yaml"), bank, root / "models", root / "tax", tmp_path / "o")


def test_the_stage_answers_bad_input_in_one_line_with_exit_2(tmp_path, setup):
    import subprocess
    import sys
    from pathlib import Path

    root, bank, _ = setup
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "stages/multitask.py", "pairs", "--params", str(root / "params.yaml"),
                           "--bank", str(bank), "--out", str(tmp_path / "o")], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: multitask.groupings: 'pairs' is not listed "
                                                "(listed: single, taxonomy, all, random)"]


def test_a_run_is_stamped_by_what_makes_it(setup):
    """Reordering weightings or editing a task outside the group keeps a stored run; its own task's
    epochs or the probe (which stores the TAG matrix) do not."""
    import dataclasses

    from taskonomy.baselines.multitask import Run, run_stamps
    from taskonomy.config import TaskParams

    _, _, params = setup
    run = Run("taxonomy", ("rgb2depth", "rgb2sfnorm"), "uncertainty", 0)
    probed = Run("all", ("rgb2depth", "rgb2sfnorm"), "equal", 0)
    base = run_stamps([run, probed], params, "d")
    m = dataclasses.replace(params.multitask, weightings=["uncertainty", "equal"])
    reordered = run_stamps([run, probed], dataclasses.replace(params, multitask=m), "d")
    assert reordered[run.label] == base[run.label] and reordered[probed.label] != base[probed.label]
    tasks = dict(params.tasks)
    tasks["class_scene"] = TaskParams(epochs=9)
    assert run_stamps([run], dataclasses.replace(params, tasks=tasks), "d")[run.label] == base[run.label]
    tasks["rgb2depth"] = TaskParams(epochs=9)
    assert run_stamps([run], dataclasses.replace(params, tasks=tasks), "d")[run.label] != base[run.label]
    assert run_stamps([run], params, "other data")[run.label] != base[run.label]
