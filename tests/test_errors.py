"""Entry points: one line and exit 2 for user errors; ``--timing`` written only on success."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest
from conftest import write_params

from taskonomy.errors import DataError
from taskonomy.stage import process_seconds, run_stage

ROOT = Path(__file__).resolve().parents[1]


def test_timing_is_taken_out_of_the_arguments_and_written_on_success(tmp_path):
    seen = []
    out = tmp_path / "timings" / "stage@x.json"
    with pytest.raises(SystemExit) as exit_:
        run_stage(lambda argv: seen.append(argv) or 0, ["x", "--timing", str(out), "--flag"])
    assert exit_.value.code == 0 and seen == [["x", "--flag"]]
    record = json.loads(out.read_text())
    assert record["seconds"] > 0 and record["command"].endswith("x --flag")


@pytest.mark.parametrize("outcome", ["error", "nonzero"])
def test_no_timing_when_the_stage_fails(tmp_path, capsys, outcome):
    def main(argv):
        if outcome == "error":
            raise DataError("data/bank/test: missing")
        return 3

    out = tmp_path / "t.json"
    with pytest.raises(SystemExit) as exit_:
        run_stage(main, [f"--timing={out}"])
    assert exit_.value.code == (2 if outcome == "error" else 3)
    assert not out.exists()
    if outcome == "error":
        assert capsys.readouterr().err == "error: data/bank/test: missing\n"


def test_process_seconds_counts_from_process_start():
    before = process_seconds()
    time.sleep(0.05)
    assert before > 0 and process_seconds() - before == pytest.approx(0.05, abs=0.03)


# --- the Python a stage runs in (stages/_stage.py) ------------------------------------------------

def _stage_copy(root: Path) -> Path:
    """task_list's script and stages/_stage.py in ``root/stages``: a checkout whose ``python`` may lack
    the project."""
    (root / "stages").mkdir(parents=True)
    for name in ("_stage.py", "task_list.py"):
        shutil.copy(ROOT / "stages" / name, root / "stages" / name)
    write_params(root / "params.yaml", {"tasks": {"rgb2depth": {"source_only": False}, "random": {"source_only": True}}})
    return root / "stages" / "task_list.py"


def _run_without_site(script: Path) -> subprocess.CompletedProcess:
    """``python -S script``: this interpreter without its site-packages (and PYTHONPATH), so neither
    torch nor the project imports, as in the system Python DVC finds on PATH when the environment is
    not activated."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-S", str(script), "--params", "params.yaml", "--out", "roles.json"],
                          cwd=script.parents[1], capture_output=True, text=True, timeout=120, env=env)


def test_a_stage_in_a_python_without_the_project_says_so_in_one_line(tmp_path):
    script = _stage_copy(tmp_path)
    done = _run_without_site(script)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"task_list.py: {sys.executable} (the python on PATH)")
    assert "cannot import taskonomy, torch" in lines[0]
    assert f"source {tmp_path / '.venv'}/bin/activate" in lines[0] and "make repro" in lines[0]
    assert not (tmp_path / "roles.json").exists()


def test_a_stage_in_a_python_without_the_project_reruns_with_the_checkouts_venv(tmp_path):
    script = _stage_copy(tmp_path)
    venv.create(tmp_path / ".venv", with_pip=False)
    # the new environment sees this one's packages (torch, the project) through a .pth file
    site = next((tmp_path / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "outer.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    done = _run_without_site(script)
    assert done.returncode == 0, done.stderr
    assert f"running the stage with {tmp_path / '.venv' / 'bin' / 'python'}" in done.stderr
    roles = json.loads((tmp_path / "roles.json").read_text())
    assert roles == {"tasks": ["rgb2depth", "random"], "targets": ["rgb2depth"], "source_only": ["random"],
                     "target_only": [], "encoders": []}


def test_a_stage_reruns_with_the_venv_once_and_never_loops(tmp_path):
    script = _stage_copy(tmp_path)
    venv.create(tmp_path / ".venv", with_pip=False)  # an environment without the project
    done = _run_without_site(script)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and "running the stage with" in lines[0]
    assert lines[1].startswith(f"task_list.py: {tmp_path / '.venv' / 'bin' / 'python'} (the python on PATH) "
                               "cannot import taskonomy, torch")
