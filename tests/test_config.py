"""params.yaml loads into typed sections; bad values stop with one line naming the key."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taskonomy.config import Params, TaskParams, load_params
from taskonomy.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _unshown(cls, data: dict, prefix: str = ""):
    """Dotted keys of ``cls``'s fields (nested sections too) that ``data`` does not show."""
    import typing
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if f.name not in data:
            yield key
        elif dataclasses.is_dataclass(hints[f.name]):
            yield from _unshown(hints[f.name], data[f.name] or {}, key + ".")


def test_params_yaml_is_the_whole_recipe():
    """Every field of every section, nested ones included, appears in params.yaml with its value: no
    setting hides as a code default. Task entries are exempt: their epochs / lr / epoch_items are
    per-task overrides of train_task's, and an absent one means no override."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(_unshown(Params, raw)) == []
    assert list(_unshown(Params, {**raw, "report": {}})) == ["report.top_sources"]     # the check can fail


def test_committed_params_load():
    params = load_params(ROOT / "params.yaml")
    assert isinstance(params, Params)
    assert isinstance(params.tasks["rgb2depth"], TaskParams)
    assert {"colorization", "jigsaw", "inpainting", "random"} <= {
        name for name, t in params.tasks.items() if t.source_only}
    assert "rgb2depth" in params.targets() and "random" not in params.targets()


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["render"].update(resolution=4), "render.resolution: must be >= 8, got 4"),
    (lambda r: r["render"].update(resolutoin=32), "render.resolutoin: unknown key"),
    (lambda r: r["render"].update(shadows="yes"), "render.shadows: expected bool, got 'yes'"),
    (lambda r: r["train_task"].update(lr=-1.0), "train_task.lr: must be > 0, got -1.0"),
    (lambda r: r["train_task"].update(epochs=2.5), "train_task.epochs: expected int, got 2.5"),
    (lambda r: r["train_task"].update(optimizer="lbfgs"), "train_task.optimizer: expected one of"),
    (lambda r: r["tasks"]["rgb2depth"].update(epochs=0), "tasks.rgb2depth.epochs: must be >= 1, got 0"),
    (lambda r: r["taxonomy"].update(budgets=[1, "two"]), "taxonomy.budgets[1]: expected int"),
    (lambda r: r.update(extra={}), "extra: unknown key"),
    (lambda r: r["render"].update(objects_min=9, objects_max=3), "render.objects_min: must be <="),
    (lambda r: r["render"].update(views_per_scene=3), "render.views_per_scene: must be >= 6, got 3"),
    (lambda r: r["render"].update(views_per_scene=7), "render.views_per_scene: must be a multiple of 3"),
    (lambda r: r["train_task"].update(lr=float("nan")), "train_task.lr: must be a finite number, got nan"),
    (lambda r: r["train_task"].update(weight_decay=float("inf")), "train_task.weight_decay: must be a finite number"),
    (lambda r: r["train_task"].update(epochs=10 ** 20), "train_task.epochs: must be <= 100000"),
    (lambda r: r["taxonomy"].update(budgets=[]), "taxonomy.budgets: must list at least 1 value, got []"),
    (lambda r: r["tasks"].update(rgb2dpth={"source_only": False}), "tasks.rgb2dpth: not a task of the bank (known: "),
    (lambda r: r["tasks"].update({"../evil": {}}), "tasks.../evil: not a task of the bank"),
    (lambda r: r["tasks"].update({1: {}}), "tasks.1: not a task of the bank"),
    (lambda r: r["finetune"].update(targets=["rgb2dpth"]), "finetune.targets: 'rgb2dpth' is not in the task list"),
    (lambda r: r["finetune"].update(targets=["jigsaw"]), "finetune.targets: 'jigsaw' is source-only, never a target"),
    (lambda r: r["finetune"].update(modes=["frozen", "unfrozen"]), "finetune.modes[1]: expected one of 'frozen'"),
    (lambda r: r["finetune"].update(roles=["oracle"]), "finetune.roles[0]: expected one of 'taxonomy'"),
    (lambda r: r["finetune"].update(budget=99), "finetune.budget: 99 is not among taxonomy.budgets"),
    (lambda r: r["finetune"].update(max_order=7), "finetune.max_order: 7 is not among taxonomy.max_orders"),
    (lambda r: r["finetune"].update(sizes=[240, 240]), "finetune.sizes: 240 listed twice"),
    (lambda r: r["finetune"].update(sizes=[4]), "finetune.sizes: must be >= 8, got 4"),
    (lambda r: r["finetune"].update(backbone_lr_scale=0), "finetune.backbone_lr_scale: must be > 0"),
])
def test_bad_values_name_the_key(tmp_path, edit, message):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, edit))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("section", [f.name for f in dataclasses.fields(Params)])
def test_a_missing_section_is_refused_as_dvc_refuses_it_and_an_empty_one_takes_the_defaults(tmp_path, section):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, lambda r: r.pop(section)))
    assert str(err.value) == (f"{tmp_path / 'params.yaml'}: section '{section}' missing (DVC refuses a params "
                              f"file without a stage's section; write '{section}: {{}}' for the code's defaults)")
    if section != "tasks":
        params = load_params(_write(tmp_path, lambda r: r.update({section: {}})))
        assert getattr(params, section) == type(getattr(params, section))()


@pytest.mark.parametrize("text, value", [("1e-3", 0.001), ("2E-4", 0.0002), (".5e-2", 0.005), ("1.0e-3", 0.001)])
def test_floats_read_as_dvc_reads_them(tmp_path, text, value):
    """YAML 1.2 (DVC's) takes 1e-3 as a number; PyYAML alone would make it the string '1e-3'."""
    path = tmp_path / "params.yaml"
    head, section = (ROOT / "params.yaml").read_text().split("\ntrain_task:\n")
    edit = lambda lr: re.sub(r"\n  lr: [^\n]*\n", f"\n  lr: {lr}\n", section, count=1)  # noqa: E731
    path.write_text(f"{head}\ntrain_task:\n{edit(text)}")
    assert load_params(path).train_task.lr == value
    path.write_text(f"{head}\ntrain_task:\n{edit(repr(text))}")
    with pytest.raises(ParamsError, match=f"train_task.lr: expected float, got '{re.escape(text)}'"):
        load_params(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("render: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    twice = tmp_path / "twice.yaml"
    twice.write_text((ROOT / "params.yaml").read_text().replace("  rgb2mist: {source_only: false}\n",
                                                                 "  rgb2depth: {source_only: true}\n"))
    with pytest.raises(ParamsError, match=r"not valid YAML \(line \d+\): key 'rgb2depth' appears twice"):
        load_params(twice)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("tasks: {caf\xe9: {}}\n".encode("latin-1"))
    with pytest.raises(ParamsError, match="not UTF-8 text"):
        load_params(latin)
    with pytest.raises(ParamsError, match="is a folder, not a params file"):
        load_params(tmp_path)
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(ParamsError, match=r"empty.yaml: empty params file$"):
        load_params(tmp_path / "empty.yaml")


def test_cli_reports_one_line_and_exit_code_2(tmp_path):
    path = _write(tmp_path, lambda r: r["render"].update(resolution=4))
    proc = subprocess.run([sys.executable, "-m", "taskonomy", "check-params", str(path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {path}: render.resolution: must be >= 8, got 4"]
    assert "Traceback" not in proc.stderr
