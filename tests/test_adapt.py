"""Domain adaptation baselines (issue 24): gradient reversal, the lambda schedule, the objectives, the
adapt@<task> stage (target labels reach only the oracle), the summary's gap closed."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import write_tiny_train_params
from fake_bank import fake_arrays, split_manifest, write_fake_bank

from taskonomy.stage import timing_notes
from taskonomy.baselines.adapt import (AdaptNet, DomainAdversarial, EntropyMinimisation, TargetFeed, dann_lambda,
                                       normalised_entropy, plan, reverse_gradient)
from taskonomy.baselines.adapt_outputs import adapt_task
from taskonomy.baselines.adapt_summary import gap_closed, gap_interval, write_summary
from taskonomy.bank import load_split
from taskonomy.config import load_params
from taskonomy.errors import DataError, ParamsError
from taskonomy.losses import write_self
from taskonomy.nets.models import build_task_network
from taskonomy.nets.train import save_checkpoint, task_checkpoint, train_task_network
from taskonomy.tasks import get_task


# --- gradient reversal, schedule, objectives ------------------------------------------------------

def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = reverse_gradient(x, 0.25)
    assert torch.equal(y, x)
    (y * torch.tensor([2.0, 3.0, 4.0])).sum().backward()
    # d/dx of sum(w * x) is w; reversed at lambda 0.25: -0.25 w
    assert torch.allclose(x.grad, torch.tensor([-0.5, -0.75, -1.0]))


def test_lambda_schedule_is_ganins():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    values = [dann_lambda(p / 20) for p in range(21)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert dann_lambda(0.1, gamma=1.0) < dann_lambda(0.1, gamma=10.0)


def test_domain_classifier_learns_while_the_encoder_gets_the_reversed_gradient():
    torch.manual_seed(0)
    objective = DomainAdversarial(features=4, width=8, gamma=10.0, weight=1.0)
    source = torch.randn(6, 1, 4, 1, 1, requires_grad=True)
    target = torch.randn(6, 1, 4, 1, 1, requires_grad=True)
    loss = objective(None, source, target, progress=1.0)
    loss.backward()
    grads = source.grad.clone()
    # the same loss without reversal: the representation's gradient is exactly -1/lambda times it
    objective.zero_grad()
    plain = source.detach().clone().requires_grad_(True)
    rep = torch.cat([plain, target.detach()])
    domain = torch.cat([torch.zeros(6), torch.ones(6)])
    torch.nn.functional.binary_cross_entropy_with_logits(objective.classifier(rep), domain).backward()
    assert torch.allclose(grads, -dann_lambda(1.0) * plain.grad, atol=1e-7)


def test_normalised_entropy_is_one_for_uniform_and_zero_for_certain_predictions():
    uniform = torch.zeros(2, 5)
    certain = torch.tensor([[50.0, 0, 0, 0, 0]])
    assert torch.allclose(normalised_entropy(uniform), torch.ones(2))
    assert normalised_entropy(certain).item() < 1e-6
    dense = torch.zeros(1, 3, 4, 4)
    assert normalised_entropy(dense).shape == (1, 4, 4)


def test_entropy_objective_reads_the_head_on_target_representations_only():
    task = get_task("class_scene").with_outputs(3)
    net = build_task_network(task, load_params_default().train_task, 16).eval()   # BatchNorm: same output twice
    objective = EntropyMinimisation(weight=0.5)
    target = torch.randn(4, 1, 8, 4, 4)
    expected = 0.5 * normalised_entropy(net.head(target)).mean()
    assert torch.allclose(objective(net, None, target, 0.3), expected)


def load_params_default():
    from pathlib import Path
    return load_params(Path(__file__).resolve().parents[1] / "params.yaml")


def test_target_feed_draws_the_same_batch_for_the_same_step():
    task = get_task("rgb2depth").with_outputs(1)
    model = AdaptNet(build_task_network(task, load_params_default().train_task, 16), EntropyMinimisation(1.0))
    views = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1, 1).expand(20, 1, 3, 16, 16)
    feed = TargetFeed(model, views, batch_size=4, total=10, seed=3)
    feed(5, None, None)
    first, progress = model.target.clone(), model.progress
    feed(6, None, None)
    assert not torch.equal(first, model.target)
    feed(5, None, None)
    assert torch.equal(first, model.target) and progress == model.progress == 0.5


# --- the stage on a fake source bank and a fake target domain ---------------------------------------

def _write_target(root, source, poison: bool = False):
    """A fake target domain: target_train new scenes, target_test the test split's scenes with other
    colours; ``poison`` scrambles every label of target_train."""
    test = load_split(source, "test")
    arrays = {"target_test": {k: np.array(v) for k, v in test.arrays.items()},
              "target_train": fake_arrays(4, 16, seed=99)}
    arrays["target_test"]["rgb"] = (255 - arrays["target_test"]["rgb"]).astype(np.uint8)
    if poison:
        rng = np.random.default_rng(5)
        train = arrays["target_train"]
        train["rgb2depth"] = rng.permutation(train["rgb2depth"].ravel()).reshape(train["rgb2depth"].shape)
        train["class_scene"] = (train["class_scene"] + 1) % 3
    for split, values in arrays.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in values.items():
            np.save(folder / f"{name}.npy", arr)
        manifest = split_manifest("test", values, len(values["rgb"]) // 4, 16)
        (folder / "manifest.json").write_text(json.dumps({**manifest, "split": split}))
    (root / "manifest.json").write_text(json.dumps({"format": 1, "splits": list(arrays),
                                                    "params": {"domain": {"shift": ["fake"], "severity": 1.0}}}))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake bank, a fake target domain, tiny task networks for rgb2depth and class_scene."""
    root = tmp_path_factory.mktemp("adapt")
    bank = write_fake_bank(root / "bank", {"train": 4, "transfer": 2, "test": 2})
    raw = yaml.safe_load(write_tiny_train_params(root / "base.yaml", threads=1).read_text())
    raw["train_task"].update(epochs=2)
    raw["adapt"] = {"tasks": ["rgb2depth", "class_scene"], "seeds": [0, 1], "validation_items": 8, "bootstrap": 50,
                    "workers": 1, "methods": {"dann": ["rgb2depth", "class_scene"], "entropy": ["class_scene"]}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(root / "params.yaml")
    splits = {s: load_split(bank, s) for s in ("train", "test")}
    for name in ("rgb2depth", "class_scene"):
        run = train_task_network(get_task(name), splits["train"], splits["test"], params.train_task)
        save_checkpoint(root / "models" / name / "model.pt",
                        task_checkpoint(get_task(name), params.train_task, network=run.network, run=run))
        write_self(root / "models" / name / "test_losses.npy", run.test_losses)
    return root, bank, _write_target(root / "target", bank), params


def _stage(setup, task, out="out", target=None, params=None):
    root, bank, shifted, base = setup
    adapt_task(task, params or base, bank, target or shifted, root / "models", root / out / task)
    return root / out / task


def test_stage_runs_every_method_and_seed_and_reuses_the_task_network(setup):
    root, _, _, params = setup
    out = _stage(setup, "class_scene")
    rows = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert [(r.method, r.seed) for r in rows.itertuples()] == [(r.method, r.seed) for r in plan("class_scene", params)]
    assert list(dict.fromkeys(rows.method)) == ["source_only", "dann", "entropy", "oracle"]
    reused = rows[(rows.method == "source_only") & (rows.seed == 0)].iloc[0]
    assert reused.source_loss == pytest.approx(np.load(root / "models/class_scene/test_losses.npy").mean())
    assert "reused" in reused.note
    # every loss finite; the shift costs the source-only network on target images
    assert np.isfinite(rows.source_loss).all() and np.isfinite(rows.target_loss).all()
    with np.load(out / "losses.npz") as z:
        assert set(z.files) == {f"{k}|{d}" for k in rows.key for d in ("source", "target")}
        assert all(len(z[k]) == len(z[f"{rows.key[0]}|source"]) for k in z.files)
    metrics = json.loads((out / "metrics.json").read_text())
    assert timing_notes()["trained"] == 7 and metrics["domain"]["shift"] == ["fake"]
    written = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    again = _stage(setup, "class_scene")
    assert timing_notes()["trained"] == 0
    assert {f.name: f.read_bytes() for f in again.iterdir() if f.is_file()} == written
    assert pd.read_csv(again / "runs.csv", keep_default_na=False).equals(rows)


def test_adaptation_methods_never_read_target_train_labels(setup, tmp_path):
    """Scrambling target_train's labels changes the oracle's result and nothing else."""
    root, bank, _, params = setup
    clean = pd.read_csv(_stage(setup, "class_scene") / "runs.csv", keep_default_na=False)
    poisoned_bank = _write_target(tmp_path / "poisoned", bank, poison=True)
    poisoned = pd.read_csv(_stage(setup, "class_scene", out=str(tmp_path / "p"), target=poisoned_bank) / "runs.csv",
                           keep_default_na=False)
    for method in ("source_only", "dann", "entropy"):
        a, b = clean[clean.method == method], poisoned[poisoned.method == method]
        assert np.array_equal(a.target_loss.to_numpy(), b.target_loss.to_numpy()), method
        assert np.array_equal(a.source_loss.to_numpy(), b.source_loss.to_numpy()), method
    a, b = clean[clean.method == "oracle"], poisoned[poisoned.method == "oracle"]
    assert not np.array_equal(a.target_loss.to_numpy(), b.target_loss.to_numpy())


def test_summary_reports_gap_closed_with_intervals_and_marks_target_selection(setup):
    root, _, _, params = setup
    for task in params.adapt.tasks:
        _stage(setup, task)
    record = write_summary(params, root / "out", root / "adapt.csv", root / "summary", root / "metrics/adapt.json", rounds=50)
    table = pd.read_csv(root / "adapt.csv", keep_default_na=False)
    assert set(table.task) == {"rgb2depth", "class_scene"}
    refs = table[table.seed == "mean"].set_index(["task", "method"])
    assert refs.loc[("class_scene", "source_only"), "gap_closed"] == 0.0
    assert refs.loc[("class_scene", "oracle"), "gap_closed"] == 1.0
    dann = refs.loc[("class_scene", "dann")]
    if dann.gap_lo != "":      # undefined where the tiny oracle is no better than source-only in a resample
        assert float(dann.gap_lo) <= float(dann.gap_closed) <= float(dann.gap_hi)
    if dann.gap_min != "":
        assert float(dann.gap_min) <= float(dann.gap_max)
    assert ("rgb2depth", "entropy") not in refs.index
    selected = pd.read_csv(root / "summary" / "target_selected.csv")
    assert (selected.target_selected_loss <= selected.target_loss + 1e-9).all()
    assert len(record["findings"]) == 2 and all("gap" in f or "undefined" in f for f in record["findings"])
    # the DVC metrics: gap closed per adapted task and method, the seed mean's with its interval
    metrics = json.loads((root / "metrics/adapt.json").read_text())["adapt"]
    assert set(metrics) == {"rgb2depth", "class_scene"} and set(metrics["class_scene"]) == {"dann", "entropy"}
    if dann.gap_closed != "":
        assert metrics["class_scene"]["dann"]["gap_closed"] == pytest.approx(float(dann.gap_closed), abs=1e-4)
    assert (root / "summary" / "adapt.png").stat().st_size > 0


def test_gap_closed_and_its_bootstrap_interval():
    assert gap_closed(2.0, 1.5, 1.0) == pytest.approx(0.5)
    assert gap_closed(2.0, 2.5, 1.0) == pytest.approx(-0.5)
    assert np.isnan(gap_closed(1.0, 0.5, 1.2))           # the oracle no better: undefined
    rng = np.random.default_rng(0)
    so = rng.gamma(4.0, 0.5, 200)
    oracle = so * 0.5
    adapted = so * 0.75
    lo, hi = gap_interval(so, adapted, oracle, rounds=200)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)   # exactly halfway on every image
    noisy = so * 0.75 + rng.normal(0, 0.3, 200)
    lo, hi = gap_interval(so, noisy, oracle, rounds=200)
    assert lo < gap_closed(so.mean(), noisy.mean(), oracle.mean()) < hi


def test_bad_input_is_one_line_before_training(setup, tmp_path):
    root, bank, shifted, params = setup
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for change, words in (({"methods": {"entropy": ["rgb2depth"]}}, "entropy minimisation needs a distribution"),
                          ({"shift": ["rain"]}, "unknown shift 'rain'"),
                          ({"severity": 1.5}, "adapt.severity"),
                          ({"methods": {"mixup": ["rgb2depth"]}}, "unknown method"),
                          ({"tasks": ["fix_pose"], "methods": {}}, "does not predict from one plain image")):
        bad = {**raw, "adapt": {**raw["adapt"], **change}}
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(ParamsError, match=words):
            load_params(tmp_path / "bad.yaml")
    with pytest.raises(ParamsError, match="'rgb2sfnorm' is not listed"):
        _stage(setup, "rgb2sfnorm", out=str(tmp_path / "o"))
    other = tmp_path / "other"
    _write_target(other, bank)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["params"]["resolution"] = 32
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="other render params"):
        _stage(setup, "class_scene", out=str(tmp_path / "o"), target=other)
    with pytest.raises(DataError, match="train_task@rgb2depth"):
        adapt_task("rgb2depth", params, bank, shifted, tmp_path / "no-models", tmp_path / "o")


def test_the_stages_answer_bad_params_in_one_line_with_exit_2(setup, tmp_path):
    """Before rendering or training: an unknown shift (render_target), entropy on a regression task (adapt)."""
    import subprocess
    import sys
    from pathlib import Path

    root, bank, shifted, _ = setup
    repo = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for script, change, line in (
            ("stages/adapt.py", {"methods": {"entropy": ["rgb2depth"]}},
             "adapt.methods.entropy: 'rgb2depth' is a dense_regression task; entropy minimisation needs a "
             "distribution output (classification or dense_classification)"),
            ("stages/render_target.py", {"shift": ["rain"]},
             "adapt.shift: unknown shift 'rain' (known: palette, lighting, fog, blur, noise)")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**raw, "adapt": {**raw["adapt"], **change}}))
        args = ["rgb2depth", "--bank", str(bank), "--target", str(shifted)] if script == "stages/adapt.py" else []
        proc = subprocess.run([sys.executable, script, *args, "--params", str(tmp_path / "bad.yaml"),
                               "--out", str(tmp_path / "o")], cwd=repo, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'bad.yaml'}: {line}"]
        assert not (tmp_path / "o").exists()
