"""stages/train_task.py as DVC runs it: outputs per task, and one-line errors with exit code 2."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import write_tiny_train_params
from fake_bank import write_fake_bank

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "stages" / "train_task.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return write_fake_bank(tmp_path_factory.mktemp("bank") / "bank")

@pytest.fixture(scope="module")
def params(tmp_path_factory):
    return write_tiny_train_params(tmp_path_factory.mktemp("params") / "params.yaml", threads=1)


def _run(task: str, bank: Path, out: Path, params: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), task, "--bank", str(bank), "--out", str(out),
                           "--params", str(params), *extra], capture_output=True, text=True, env=ENV, timeout=300)

@pytest.mark.parametrize("task, items", [("segmentsemantic", 16), ("fix_pose", 12)])
def test_trained_task_writes_every_output(task, items, bank, params, tmp_path):
    out = tmp_path / task
    proc = _run(task, bank, out, params, "--metrics", str(tmp_path / "metrics" / f"{task}.json"),
                "--curves", str(tmp_path / "curves"), "--timing", str(tmp_path / "timing.json"))
    assert proc.returncode == 0, proc.stderr
    # no output holds a time: trained again, every file has the same bytes (so dvc.lock the same hashes)
    again = _run(task, bank, tmp_path / "again", params)
    assert again.returncode == 0, again.stderr
    files = sorted(p.name for p in out.iterdir())
    assert "model.pt" in files and files == sorted(p.name for p in (tmp_path / "again").iterdir())
    assert all((out / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
    assert json.loads((tmp_path / "timing.json").read_text())["train_seconds"] > 0
    losses = np.load(out / "test_losses.npy")
    assert losses.dtype == np.float32 and losses.shape == (items,) and np.isfinite(losses).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["trained"] is True
    assert metrics["test_loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
    assert metrics["trivial_loss"] > 0 and metrics["epochs"] == 2 and "train_seconds" not in metrics
    # the DVC metrics: the headline numbers alone, rounded, no times (a rerun's diff shows results only)
    headline = json.loads((tmp_path / "metrics" / f"{task}.json").read_text())
    assert headline == {k: pytest.approx(metrics[k], abs=1e-6) for k in ("test_loss", "trivial_loss", "loss_ratio", "beats_trivial")}
    rows = list(csv.DictReader((out / "curve.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["train_loss"]) > 0 for r in rows)
    # the same curves in DVCLive's layout, one TSV per loss with the epoch as step, for `dvc plots`
    for name in ("train_loss", "test_loss"):
        live = list(csv.DictReader((tmp_path / "curves/plots/metrics" / f"{name}.tsv").open(), delimiter="\t"))
        assert [int(r["step"]) for r in live] == [1, 2]
        assert [float(r[name]) for r in live] == pytest.approx([float(r[name]) for r in rows], rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "curves").rglob("*") if p.is_file()) == ["test_loss.tsv", "train_loss.tsv"]
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "checkpoint.pt").exists()
    from taskonomy.nets.train import load_checkpoint, load_encoder
    payload = load_checkpoint(out / "model.pt")
    assert payload["task"] == task and payload["train_task"]["epochs"] == 2 and payload["code"]["code_sha256"]
    assert load_encoder(out / "model.pt").out_channels == 8

def test_per_task_epoch_items_override(bank, params, tmp_path):
    raw = yaml.safe_load(params.read_text())
    raw["train_task"]["epoch_items"] = 16
    raw["tasks"]["fix_pose"]["epoch_items"] = 8
    override = tmp_path / "params.yaml"
    override.write_text(yaml.safe_dump(raw))
    for task, expected in (("fix_pose", 8), ("segmentsemantic", 16)):
        proc = _run(task, bank, tmp_path / task, override)
        assert proc.returncode == 0, proc.stderr
        metrics = json.loads((tmp_path / task / "metrics.json").read_text())
        assert metrics["epoch_items"] == expected and metrics["train_items"] > expected


def test_random_saves_a_seeded_untrained_encoder(bank, params, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        proc = _run("random", bank, out, params, "--metrics", str(out / "headline.json"), "--curves", str(out / "curves"))
        assert proc.returncode == 0, proc.stderr
    from taskonomy.nets.train import load_checkpoint
    a, b = load_checkpoint(first / "model.pt"), load_checkpoint(second / "model.pt")
    assert a["head"] is None and all(np.array_equal(a["encoder"][k], b["encoder"][k]) for k in a["encoder"])
    assert np.load(first / "test_losses.npy").shape == (0,)
    assert json.loads((first / "metrics.json").read_text()) == {"task": "random", "trained": False}
    assert json.loads((first / "headline.json").read_text()) == {}         # nothing trained, nothing to show
    assert (first / "curves/plots/metrics/train_loss.tsv").read_text() == "step\ttrain_loss\n"
    assert (first / "samples.png").exists()

def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]

def test_unknown_task(bank, params, tmp_path):
    _one_line_error(_run("rgb2depht", bank, tmp_path / "x", params), "tasks.rgb2depht: not in the task list",
                    "rgb2depth")
    raw = yaml.safe_load(params.read_text())
    raw["tasks"]["surface_colour"] = {"source_only": False}
    odd = tmp_path / "params.yaml"
    odd.write_text(yaml.safe_dump(raw))
    _one_line_error(_run("surface_colour", bank, tmp_path / "y", odd), "tasks.surface_colour: not a task of the bank", "known:")

def test_missing_label_file(tmp_path, params):
    bank = write_fake_bank(tmp_path / "bank", drop=("keypoint2d",))
    _one_line_error(_run("keypoint2d", bank, tmp_path / "out", params), "keypoint2d", "keypoint2d.npy")

def test_corrupt_checkpoint(bank, params, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"\x00garbage")
    _one_line_error(_run("class_scene", bank, out, params), str(out / "checkpoint.pt"), "corrupt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA runs device: cuda")
def test_device_cuda_without_cuda_is_one_line_before_the_bank(params, tmp_path):
    raw = yaml.safe_load(params.read_text())
    raw["train_task"]["device"] = "cuda"
    cuda = tmp_path / "params.yaml"
    cuda.write_text(yaml.safe_dump(raw))
    _one_line_error(_run("rgb2depth", tmp_path / "no-bank", tmp_path / "out", cuda),
                    "train_task.device: cuda, but no CUDA device is available here", "set it to auto or cpu")
