"""taskonomy.runner (`taskonomy repro --jobs N`) on a small DVC project: ready stages at once, and
dvc.lock, the cache and `dvc status` as a serial `dvc repro` leaves them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import BIN, isolated_env

ROOT = Path(__file__).resolve().parent.parent

# four independent stages that record when they ran, and one after two of them
WORK = '''import json, os, sys, time
name, fail = sys.argv[1], os.environ.get("FAIL_STAGE")
start = time.time()
time.sleep(0.5)
if name == fail:
    sys.exit(3)
inputs = "".join(open(p).read() for p in sys.argv[2:])
os.makedirs("out", exist_ok=True)
params = open("params.yaml").read()
open(f"out/{name}.txt", "w").write(f"{name} {params!r} {inputs!r}\\n")
with open(f"spans/{name}.json", "w") as f:
    json.dump([start, time.time()], f)
with open(f"spans/{name}.env", "w") as f:
    json.dump({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "TASKONOMY_CORES", "CUDA_VISIBLE_DEVICES")}, f)
'''
DVC_YAML = {"stages": {
    "a": {"foreach": ["t1", "t2", "t3", "t4"],
          "do": {"cmd": "python work.py ${item}", "deps": ["work.py"], "params": ["n"], "outs": ["out/${item}.txt"]}},
    "b": {"cmd": "python work.py b out/t1.txt out/t2.txt b_input.txt",
          "deps": ["work.py", "out/t1.txt", "out/t2.txt", "b_input.txt"], "outs": ["out/b.txt"]},
}}


def _project(path: Path) -> dict:
    path.mkdir()
    env = isolated_env(path.parent / f"{path.name}-env", ROOT)     # DVC's and git's own files, beside it
    (path / "spans").mkdir()
    (path / "work.py").write_text(WORK)
    (path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (path / "params.yaml").write_text("n: 3\n")
    (path / "b_input.txt").write_text("one\n")
    (path / ".gitignore").write_text("/spans/\n/logs/\n")
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    return env


def _runner(path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taskonomy", "repro", *args], cwd=path, env=env,
                          capture_output=True, text=True, timeout=300)


def _ran(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.split(":")[0] for line in proc.stderr.splitlines() if ": done, recorded in dvc.lock" in line}


def _lock(path: Path) -> dict:
    return yaml.safe_load((path / "dvc.lock").read_text())["stages"]


def test_ready_stages_run_at_once_and_the_record_is_a_serial_repros(tmp_path):
    serial, concurrent = tmp_path / "serial", tmp_path / "concurrent"
    env_s, env_c = _project(serial), _project(concurrent)
    subprocess.run([str(BIN / "dvc"), "repro", "-q"], cwd=serial, env=env_s, check=True, capture_output=True)
    proc = _runner(concurrent, env_c, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert _ran(proc) == {"a@t1", "a@t2", "a@t3", "a@t4", "b"}
    # the same lock entries (DVC writes a new entry where the stage finished: the order may differ)
    assert _lock(concurrent) == _lock(serial)
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=concurrent, env=env_c, capture_output=True, text=True)
    assert "up to date" in status.stdout
    # two stages ran at once: some pair of the independent stages overlaps in time
    spans = {p.stem: json.loads(p.read_text()) for p in (concurrent / "spans").glob("*.json")}
    overlaps = [(x, y) for x in spans for y in spans if x < y and spans[x][0] < spans[y][1] and spans[y][0] < spans[x][1]]
    assert overlaps
    # b started after both of its inputs were written
    assert spans["b"][0] >= max(spans["t1"][1], spans["t2"][1])
    # an edit reruns only what DVC finds changed; nothing to do is nothing run
    (concurrent / "b_input.txt").write_text("two\n")
    again = _runner(concurrent, env_c, "--jobs", "2")
    assert again.returncode == 0 and _ran(again) == {"b"}, again.stderr
    assert _ran(_runner(concurrent, env_c, "--jobs", "2")) == set()
    # the edit undone: b's earlier run comes back from DVC's run cache, recorded as a run would be
    (concurrent / "b_input.txt").write_text("one\n")
    restored = _runner(concurrent, env_c, "--jobs", "2")
    assert restored.returncode == 0 and "b: restored from the run cache" in restored.stderr, restored.stderr
    assert _lock(concurrent) == _lock(serial)


def test_a_failing_stage_is_named_and_the_others_are_recorded(tmp_path):
    path = tmp_path / "p"
    env = {**_project(path), "FAIL_STAGE": "t3"}
    proc = _runner(path, env, "--jobs", "2")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: stage 'a@t3' (exit 3) failed; the stages that finished are recorded in dvc.lock"]
    lock = _lock(path)
    assert "a@t3" not in lock and set(lock) == _ran(proc) and {"a@t1", "a@t2"} & set(lock)
    assert (path / "logs/stages/a@t3.log").exists()


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_one_line(tmp_path, jobs):
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "--jobs", jobs)
    assert proc.returncode == 2 and proc.stderr == f"error: --jobs: {jobs}: run at least 1 stage at a time\n"
    assert not (path / "dvc.lock").exists()


def test_targets_bring_only_them_and_their_upstream_up_to_date(tmp_path):
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "--jobs", "2", "b")
    assert proc.returncode == 0, proc.stderr
    assert _ran(proc) == {"a@t1", "a@t2", "b"} and set(_lock(path)) == {"a@t1", "a@t2", "b"}
    assert _ran(_runner(path, env, "--jobs", "2", "a")) == {"a@t3", "a@t4"}        # a foreach group


def test_an_unknown_target_is_one_line(tmp_path):
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "nosuch")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: target 'nosuch': not a stage of this pipeline")


def _envs(path: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (path / "spans").glob("*.env")}


def test_stages_at_once_wait_passively_and_share_cores_or_gpus_when_asked(tmp_path):
    """OpenMP threads wait passively with more than one job (no result changes); ``--share-cores`` gives
    each stage cores / jobs (``threads: 0`` reads it); GPUs are handed out one per running stage."""
    path = tmp_path / "p"
    env = {k: v for k, v in _project(path).items() if k not in ("OMP_WAIT_POLICY", "TASKONOMY_CORES")}
    assert _runner(path, env, "--jobs", "2", "--share-cores", "a").returncode == 0
    cores = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert {n: (e["OMP_WAIT_POLICY"], e["TASKONOMY_CORES"]) for n, e in _envs(path).items()} == {
        t: ("PASSIVE", cores) for t in ("t1", "t2", "t3", "t4")}
    one = tmp_path / "one"
    _project(one)
    assert _runner(one, env, "--jobs", "1", "b").returncode == 0         # one at a time: as dvc repro runs them
    assert {(e["OMP_WAIT_POLICY"], e["TASKONOMY_CORES"]) for e in _envs(one).values()} == {(None, None)}


def test_gpus_are_handed_out_one_per_running_stage(tmp_path, monkeypatch):
    from taskonomy.runner import repro

    path = tmp_path / "p"
    env = _project(path)
    monkeypatch.setattr(os, "environ", {**env, "CUDA_VISIBLE_DEVICES": "4,7"})
    assert repro(2, path, targets=["a"]) == 0
    gpus = [e["CUDA_VISIBLE_DEVICES"] for e in _envs(path).values()]
    assert len(gpus) == 4 and set(gpus) == {"4", "7"}                # the first two at once: one each


def test_share_cores_with_ray_is_one_line(tmp_path):
    path = tmp_path / "p"
    env = _project(path)
    proc = _runner(path, env, "--ray", "127.0.0.1:9", "--share-cores")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --share-cores: on Ray") and len(proc.stderr.splitlines()) == 1


def test_threads_zero_is_the_cores_a_stage_was_given(monkeypatch):
    import torch

    from taskonomy.config import TransferParams
    from taskonomy.errors import TaskonomyError
    from taskonomy.nets.train import set_threads
    from taskonomy.transfer.engine import executor_spec

    previous = torch.get_num_threads()
    try:
        monkeypatch.setenv("TASKONOMY_CORES", "1")
        set_threads(0)
        assert torch.get_num_threads() == 1
        assert (executor_spec(TransferParams(), "cpu").workers, executor_spec(TransferParams(), "cpu").threads) == (1, 1)
        monkeypatch.setenv("TASKONOMY_CORES", "two")
        with pytest.raises(TaskonomyError, match="TASKONOMY_CORES='two': expected a whole number"):
            set_threads(0)
        monkeypatch.delenv("TASKONOMY_CORES")
        assert executor_spec(TransferParams(), "cpu").workers == (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(previous)
