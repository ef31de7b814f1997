"""taskonomy.forkserver: a stage run by the warm server behaves as if it had run in its own process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiny_train_params
from fake_bank import write_fake_bank
from taskonomy import forkserver

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not forkserver.supported(), reason="the fork server needs Linux")

SCRIPT = """\
import json, os, sys, time
from taskonomy.forkserver import delegate
delegate(__name__, __file__)
print(json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], "cwd": os.getcwd(), "x": os.environ.get("X"),
                  "child": os.environ.get("TASKONOMY_FORKSERVER_CHILD"), "path0": sys.path[0]}), flush=True)
if sys.argv[1] == "raise":
    raise ValueError("bad input here")
if sys.argv[1] == "sleep":
    time.sleep(60)
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def server_env(tmp_path_factory):
    """An environment with a server of its own (a unique name), started and ready."""
    name = f"test-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, forkserver.ENABLE: name, forkserver.IDLE: "30"}
    env.pop(forkserver.CHILD, None)
    script = tmp_path_factory.mktemp("script") / "probe.py"
    script.write_text(SCRIPT)
    first = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["child"] is None  # no server yet: ran in its own process, started one
    assert forkserver.wait_listening(forkserver.server_address(env), 60), "the fork server did not start listening"
    return env, script


def _run(env, script, *args, cwd=None):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_child_takes_over_the_callers_process(server_env, tmp_path):
    env, script = server_env
    proc = _run({**env, "X": "from the caller"}, script, "3", "more", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["child"] == "1"                      # ran in a server's child
    assert seen["argv"] == ["3", "more"]
    assert seen["cwd"] == str(tmp_path) and seen["x"] == "from the caller"
    assert seen["path0"] == str(script.parent)       # the script's folder first, as for `python script`
    assert proc.stderr == "to stderr\n"


def test_exceptions_and_exit_codes_come_back(server_env):
    env, script = server_env
    proc = _run(env, script, "raise")
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[0])["child"] == "1"
    assert "ValueError: bad input here" in proc.stderr and "Traceback" in proc.stderr
    assert _run(env, script, "0").returncode == 0


def test_a_signal_to_the_caller_reaches_the_child(server_env):
    env, script = server_env
    caller = subprocess.Popen([sys.executable, str(script), "sleep"], stdout=subprocess.PIPE, text=True, env=env)
    child = json.loads(caller.stdout.readline())["pid"]
    assert child != caller.pid
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(timeout=30) == 128 + signal.SIGTERM
    _assert_gone(child)


def test_a_killed_caller_takes_its_child_down(server_env):
    env, script = server_env
    caller = subprocess.Popen([sys.executable, str(script), "sleep"], stdout=subprocess.PIPE, text=True, env=env)
    child = json.loads(caller.stdout.readline())["pid"]
    caller.kill()
    caller.wait(timeout=30)
    _assert_gone(child)


def _assert_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the child {pid} outlived its caller")


def test_off_switch_runs_in_process(server_env):
    env, script = server_env
    proc = _run({**env, forkserver.ENABLE: "0"}, script, "0")
    assert proc.returncode == 0 and json.loads(proc.stdout)["child"] is None


def test_imported_stage_module_never_delegates(monkeypatch):
    monkeypatch.setattr(forkserver, "start_server", lambda address: pytest.fail("an import must not start a server"))
    assert forkserver.delegate("train_task", str(ROOT / "stages" / "train_task.py")) is None


def test_address_follows_the_environment(monkeypatch):
    monkeypatch.setenv(forkserver.ENABLE, "a")
    first = forkserver.server_address()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert forkserver.server_address() != first                      # libraries read it at load time
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("DVC_STAGE_SOMETHING", "x")
    assert forkserver.server_address() == first                      # the child gets it; no new server
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert forkserver.server_address() == first                      # children import the project afresh
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    assert forkserver.server_address() != first                      # read when the interpreter starts
    assert first.startswith("\0taskonomy-forkserver-")
    monkeypatch.delenv("PYTHONHASHSEED")
    monkeypatch.setenv(forkserver.ENABLE, "1")
    on = forkserver.server_address()
    monkeypatch.delenv(forkserver.ENABLE)
    assert forkserver.server_address() == on                         # on by default: the same server


def test_stage_results_identical_to_its_own_process(server_env, tmp_path):
    """A real stage (train_task: torch, threads, seeds, checkpoint) gives the same bytes both ways."""
    env, _ = server_env
    bank = write_fake_bank(tmp_path / "bank")
    params = write_tiny_train_params(tmp_path / "params.yaml", threads=2)
    losses = {}
    for mode, server in (("own", "0"), ("server", env[forkserver.ENABLE])):
        out = tmp_path / mode
        proc = subprocess.run([sys.executable, str(ROOT / "stages" / "train_task.py"), "rgb2depth", "--bank", str(bank),
                               "--out", str(out), "--params", str(params), "--timing", str(tmp_path / f"{mode}.json")],
                              capture_output=True, text=True, env={**env, forkserver.ENABLE: server}, timeout=300)
        assert proc.returncode == 0, proc.stderr
        losses[mode] = np.load(out / "test_losses.npy")
        assert json.loads((out / "metrics.json").read_text())["threads"] == 2
        assert json.loads((tmp_path / f"{mode}.json").read_text())["seconds"] > 0
    assert losses["own"].tobytes() == losses["server"].tobytes()


def test_preload_leaves_cuda_alone():
    """Forking after CUDA is initialised breaks CUDA in the children: the preload must not even probe it."""
    probe = ("import importlib, torch\n"
             "from taskonomy.forkserver import PRELOAD\n"
             "calls = []\n"
             "count, available = torch._C._cuda_getDeviceCount, torch.cuda.is_available\n"
             "torch._C._cuda_getDeviceCount = lambda *a: calls.append('count') or count(*a)\n"
             "torch.cuda.is_available = lambda *a: calls.append('available') or available(*a)\n"
             "for module in PRELOAD:\n"
             "    importlib.import_module(module)\n"
             "print(calls, torch.cuda.is_initialized())\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] False"
