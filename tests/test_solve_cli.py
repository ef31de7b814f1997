"""``taskonomy solve`` end to end (subprocess): a good solve writes its JSON; every bad input exits 2
with one line naming the problem, never a traceback."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskonomy.analysis.tables import load_published
from taskonomy.analysis.taxonomy import assign_roles, build_problem, solve_highs

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT.parent / "shared" / "data" / "taskonomy-2018"
PKL = PUBLISHED / "affinities" / "all_affinities_16k.pkl"

pytestmark = pytest.mark.skipif(not PKL.is_file(), reason=f"{PKL} not present")


def _start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "taskonomy", "solve", *args], cwd=cwd or ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _bad_cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, text the one error line must contain)."""
    (tmp / "garbage.pkl").write_bytes(b"\x00\x01 not a pickle")
    (tmp / "truncated.pkl").write_bytes(PKL.read_bytes()[:1000])
    with open(tmp / "list.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with open(tmp / "badkey.pkl", "wb") as f:
        pickle.dump({"nounderscores": 0.5}, f)
    (tmp / "dir.pkl").mkdir()
    (tmp / "nocols.csv").write_text("a,b\n1,2\n")
    (tmp / "text.csv").write_text("target,sources,affinity\nt,self,high\n")
    (tmp / "aff.txt").write_text("x")
    (tmp / "quality.csv").write_text("target,sources,affinity,quality,gain\nt,a,0.5,-5,0.5\nu,a,0.5,0.5,0.5\n")
    (tmp / "gain.csv").write_text("target,sources,affinity,quality,gain\nt,a,0.5,0.5,1.5\nu,a,0.5,0.5,0.5\n")
    rates = tmp / "rates" / "affinities" / "all_affinities.pkl"  # a win rate above 1 beside it
    rates.parent.mkdir(parents=True)
    shutil.copy(PKL, rates)
    (rates.parent.parent / "winrates").mkdir()
    with open(PKL, "rb") as f:
        wins = {k: 0.5 for k in pickle.load(f, encoding="latin1")}
    wins["rgb2depth__denoise"] = 1.5
    with open(rates.parent.parent / "winrates" / "wins_vs_task.pkl", "wb") as f:
        pickle.dump(wins, f)
    only_aff = tmp / "copy" / "all_affinities_16k.pkl"  # no winrates/ next to it
    only_aff.parent.mkdir()
    shutil.copy(PKL, only_aff)
    pkl = str(PKL)
    return {
        "missing file": (["--affinities", str(tmp / "nope.pkl")], "nope.pkl: no such file"),
        "a directory": (["--affinities", str(tmp / "dir.pkl")], "dir.pkl: no such file"),
        "garbage pickle": (["--affinities", str(tmp / "garbage.pkl")], "garbage.pkl: not a readable pickle"),
        "truncated pickle": (["--affinities", str(tmp / "truncated.pkl")], "truncated.pkl: not a readable pickle"),
        "not a dict": (["--affinities", str(tmp / "list.pkl")], "list.pkl: expected a non-empty dict"),
        "bad key": (["--affinities", str(tmp / "badkey.pkl")], "'nounderscores' is not of the form"),
        "csv columns": (["--affinities", str(tmp / "nocols.csv")], "nocols.csv: missing column 'target'"),
        "csv values": (["--affinities", str(tmp / "text.csv")], "text.csv: column 'affinity' must be numeric"),
        "unknown format": (["--affinities", str(tmp / "aff.txt")], "unknown affinity format '.txt'"),
        "negative budget": (["--affinities", pkl, "--budget", "-1"], "budget must be a finite number >= 0"),
        "budget not a number": (["--affinities", pkl, "--budget", "six"], "--budget: invalid float value"),
        "max order 0": (["--affinities", pkl, "--max-order", "0"], "max order must be an integer >= 1, got 0"),
        "unknown source-only": (["--affinities", pkl, "--source-only", "rgb2depth,telepathy"],
                                "source-only task 'telepathy' is not a task"),
        "unknown target-only": (["--affinities", pkl, "--target-only", "telepathy"], "target-only task 'telepathy'"),
        "unknown unused": (["--affinities", pkl, "--unused", "telepathy"], "unused task 'telepathy'"),
        "unknown cost task": (["--affinities", pkl, "--cost", "telepathy=2"], "cost given for unknown task 'telepathy'"),
        "bad cost": (["--affinities", pkl, "--cost", "denoise"], "--cost 'denoise': expected TASK=NUMBER"),
        "cost twice": (["--affinities", pkl, "--cost", "rgb2depth=1", "rgb2depth=5"],
                       "--cost: task 'rgb2depth' given twice (1 and 5)"),
        "value twice": (["--affinities", pkl, "--value", "denoise=1", "--value", "denoise=2"],
                        "--value: task 'denoise' given twice"),
        "two roles": (["--affinities", pkl, "--source-only", "denoise", "--target-only", "denoise"],
                      "task 'denoise' is given two roles: source-only and target-only"),
        "negative quality": (["--affinities", str(tmp / "quality.csv")],
                             "quality.csv: line 2: quality is a win rate in [0, 1] (or empty), got -5"),
        "gain above 1": (["--affinities", str(tmp / "gain.csv")], "gain.csv: line 2: gain is a win rate"),
        "win rate above 1": (["--affinities", str(rates)],
                             "wins_vs_task.pkl: value of 'rgb2depth__denoise' must be finite and in [0, 1], got 1.5"),
        "infeasible": (["--affinities", pkl, "--budget", "0.5"], "no taxonomy fits budget 0.5"),
        "no winrates": (["--affinities", str(only_aff), "--objective", "gain"],
                        "the gain objective needs win rates"),
        "missing --affinities": ([], "the following arguments are required: --affinities"),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start every CLI run at once (each is a fresh interpreter), then collect them."""
    tmp = tmp_path_factory.mktemp("solve_cli")
    out = tmp / "taxonomy.json"
    procs = {"good": (_start("--affinities", str(PKL), "--budget", "4", "--max-order", "3",
                             "--out", str(out)), ""),
             "quality": (_start("--affinities", str(PKL), "--objective", "quality", "--no-sqrt",
                                "--unused", "class_selected", "--cost", "rgb2sfnorm=2", "--value", "denoise=0.5",
                                "--out", str(tmp / "q.json")), "")}
    procs.update({name: (_start(*args), text) for name, (args, text) in _bad_cases(tmp).items()})
    results = {}
    for name, (proc, text) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = (proc.returncode, stdout, stderr, text)
    return results, tmp


def test_good_solve_writes_json(runs):
    results, tmp = runs
    rc, stdout, stderr, _ = results["good"]
    assert rc == 0, stderr
    assert "supervised (4)" in stdout and "objective" in stdout
    data = json.loads((tmp / "taxonomy.json").read_text())
    assert {"objective", "supervised", "transfers", "budget", "max_order", "status"} <= set(data)
    assert data["status"] == "optimal" and data["budget"] == 4 and data["max_order"] == 3
    transfers, _ = load_published(PKL)
    roles = assign_roles(transfers)
    expected = solve_highs(build_problem(transfers, roles, budget=4, max_order=3))
    assert data["objective"] == pytest.approx(expected.objective, abs=1e-9)
    assert len(data["supervised"]) == 4
    assert set(data["transfers"]) == set(roles.targets) - set(data["supervised"])
    assert all(set(s) <= set(data["supervised"]) and len(s) <= 3 for s in data["transfers"].values())
    assert all(v["quality"] is not None and v["gain"] is not None for v in data["per_target"].values())


def test_quality_objective_reads_sibling_winrates(runs):
    results, tmp = runs
    rc, stdout, stderr, _ = results["quality"]
    assert rc == 0, stderr
    data = json.loads((tmp / "q.json").read_text())
    assert data["objective_kind"] == "quality" and data["sqrt"] is False
    assert "class_selected" in data["roles"]["unused"]
    assert data["budget"] == 6 and data["max_order"] == 5
    # objective = Σ quality·value over the chosen transfers and supervisions
    expected = sum(v["quality"] * (0.5 if t == "denoise" else 1.0) for t, v in data["per_target"].items())
    assert data["objective"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("case", [
    "missing file", "a directory", "garbage pickle", "truncated pickle", "not a dict", "bad key", "csv columns",
    "csv values", "unknown format", "negative budget", "budget not a number", "max order 0",
    "unknown source-only", "unknown target-only", "unknown unused", "unknown cost task", "bad cost",
    "cost twice", "value twice", "two roles", "negative quality", "gain above 1", "win rate above 1",
    "infeasible", "no winrates", "missing --affinities"])
def test_bad_input_is_one_line_exit_2(runs, case):
    rc, stdout, stderr, text = runs[0][case]
    assert rc == 2
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert text in lines[0]
