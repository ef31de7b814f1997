"""The report: known-structure checks on constructed affinities, the page and its Markdown twin built
from a small fixture of every input file, and the one-line error on a missing input."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_params

from taskonomy.config import Params, from_dict
from taskonomy.report.build import SECTION_IDS, ReportInputs, write_report
from taskonomy.analysis.checks import EXPECTATIONS, FAIL, NA, PASS, check_structure, run_checks
from taskonomy.losses import write_seeded
from taskonomy.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------------
# Known-structure checks
# --------------------------------------------------------------------------------------------------

CLUSTERS = [("rgb2depth", "rgb2mist"), ("rgb2sfnorm", "reshade", "curvature"), ("edge2d", "keypoint2d", "segment2d"),
            ("segmentsemantic", "class_object", "class_scene"), ("room_layout", "vanishing_point")]
GROUPS = [("rgb2depth", "rgb2mist", "rgb2sfnorm", "reshade", "curvature", "edge3d", "keypoint3d", "segment25d"),
          ("edge2d", "keypoint2d", "segment2d", "autoencoder", "denoise", "inpainting", "colorization")]


def structured_affinities() -> pd.DataFrame:
    """Every task a source, every non-source-only task a target: 1.0 within a known cluster, 0.5
    within a group (3D / 2D), 0.1 otherwise, 0.001 from random."""
    tasks = list(TASKS)
    targets = [t for t in tasks if not TASKS[t].source_only]

    def value(s, t):
        if s == "random":
            return 0.001
        if any(s in c and t in c for c in CLUSTERS):
            return 1.0
        if any(s in g and t in g for g in GROUPS):
            return 0.5
        return 0.1

    return pd.DataFrame([[value(s, t) for t in targets] for s in tasks], index=tasks, columns=targets)


def test_known_structure_passes_on_structured_affinities():
    results = {r.name: r for r in check_structure(structured_affinities())}
    assert set(results) == {e.name for e in EXPECTATIONS}
    assert {r.status for r in results.values()} == {PASS}, [r for r in results.values() if r.status != PASS]
    assert results["depth_mist"].found == "rgb2mist is #1 for rgb2depth; rgb2depth is #1 for rgb2mist"
    assert results["normals_shading"].found == "rgb2sfnorm is #1 for reshade; rgb2sfnorm is #1 for curvature"
    assert results["3d_prefers_3d"].found.split(" vs ")[1] == "0.1000"
    assert results["random_last"].found.startswith("20/20 targets")   # 22 targets less autoencoder, denoise


def test_known_structure_fails_where_the_ties_are_broken():
    a = structured_affinities()
    a.loc["random"] = 2.0                       # random is everybody's best source
    a.loc["rgb2mist", "rgb2depth"] = 0.0        # depth no longer finds distance
    results = {r.name: r for r in check_structure(a)}
    assert results["depth_mist"].status == FAIL
    assert "rgb2mist is #25 for rgb2depth" in results["depth_mist"].found
    assert results["random_last"].status == FAIL and results["random_last"].found.startswith("0/20")
    assert results["layout_vanishing"].status == PASS    # untouched ties still hold


def test_known_structure_not_applicable_without_its_tasks():
    a = structured_affinities().drop(index="room_layout", columns="room_layout")
    results = {r.name: r for r in check_structure(a)}
    assert results["layout_vanishing"].status == NA
    assert results["layout_vanishing"].found == "not in the run: room_layout"


PUBLISHED = ROOT.parent / "shared" / "data" / "taskonomy-2018" / "affinities"
# The pickles' names for the tasks the checks name (the 1k/16k files have class_places as the scene task).
PAPER_NAMES = {"segmentsemantic_rb": "segmentsemantic", "class_1000": "class_object", "class_places": "class_scene",
               "vanishing_point_well_defined": "vanishing_point", "impainting_whole": "inpainting"}


@pytest.mark.parametrize("name", ["all_affinities_1k.pkl", "all_affinities_16k.pkl"])
def test_known_structure_holds_on_the_papers_affinities(name):
    """The expectations are not peculiar to the synthetic bank: Taskonomy's own first-order affinities
    (real images, networks trained on 120k of them) meet every one."""
    from taskonomy.analysis.tables import load_pickle_dict

    path = PUBLISHED / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    columns: dict[str, dict[str, float]] = {}
    for key, value in load_pickle_dict(path).items():
        parts = [PAPER_NAMES.get(p, p) for p in key.split("__")]
        if len(parts) == 2 and parts[0] != "self":
            columns.setdefault(parts[1], {})[parts[0]] = value
    a = pd.DataFrame(columns)
    results = {r.name: r for r in check_structure(a)}
    assert {r.status for r in results.values()} == {PASS}, [r for r in results.values() if r.status != PASS]
    assert results["depth_mist"].found.startswith("rgb2mist is #1 for rgb2depth")
    assert results["normals_shading"].found == "rgb2sfnorm is #1 for reshade; rgb2sfnorm is #1 for curvature"


# --------------------------------------------------------------------------------------------------
# A small fixture of every input of the report
# --------------------------------------------------------------------------------------------------

FIXTURE_TASKS = {"rgb2depth": False, "rgb2mist": False, "edge2d": False, "class_scene": False, "random": True}
BUDGETS, MAX_ORDERS = [1, 2], [1, 2]


def _png(path: Path, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.random.default_rng(seed).random((8, 12)))


def write_report_inputs(root: Path) -> tuple[ReportInputs, Params]:
    """Every file stage report reads, small and consistent: 4 targets + random, 2 budgets x 2 orders.
    rgb2depth's network loses to its trivial baseline and to the transfer from rgb2mist."""
    tasks = list(FIXTURE_TASKS)
    targets = [t for t, only in FIXTURE_TASKS.items() if not only]
    params = from_dict(Params, {"tasks": {t: {"source_only": o} for t, o in FIXTURE_TASKS.items()},
                                "taxonomy": {"budgets": BUDGETS, "max_orders": MAX_ORDERS}})
    inputs = ReportInputs(task_list=root / "outputs/task_list.json", models=root / "models",
                          transfer=root / "outputs/transfer", bank_samples=root / "reports/figures/bank_samples.png",
                          first_order=root / "reports/affinity", affinities=root / "reports/affinities.csv",
                          taxonomy=root / "reports/taxonomy", checks=root / "reports/checks/checks.json",
                          lock=root / "dvc.lock",
                          timings=root / "logs/timings")
    inputs.task_list.parent.mkdir(parents=True)
    inputs.task_list.write_text(json.dumps({"tasks": tasks, "targets": targets, "source_only": ["random"]}))
    self_loss = {"rgb2depth": 0.8, "rgb2mist": 0.4, "edge2d": 0.3, "class_scene": 0.9}
    for i, t in enumerate(tasks):
        d = inputs.models / t
        d.mkdir(parents=True)
        if t == "random":
            (d / "metrics.json").write_text(json.dumps({"task": t, "trained": False}))
            (d / "curve.csv").write_text("epoch,train_loss,test_loss,lr\n")
            continue
        trivial = 0.5 if t == "rgb2depth" else 2 * self_loss[t]
        (d / "metrics.json").write_text(json.dumps({"task": t, "trained": True, "test_loss": self_loss[t],
                                                    "trivial_loss": trivial, "beats_trivial": 0.25}))
        pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.6], "test_loss": [0.9, self_loss[t]],
                      "lr": [1e-3, 0.0]}).to_csv(d / "curve.csv", index=False)
        np.save(d / "test_losses.npy", np.full(6, self_loss[t], dtype=np.float32))
        m = inputs.transfer / t / "metrics.json"
        m.parent.mkdir(parents=True)
        m.write_text(json.dumps({"source": t, "targets": 3}))
    _png(inputs.bank_samples, 0)
    losses = pd.DataFrame(1.0, index=tasks, columns=targets)
    losses.loc["rgb2mist", "rgb2depth"] = 0.6                     # beats rgb2depth's self (0.8)
    noise = np.random.default_rng(0).normal(0, 0.01, size=(len(tasks), len(targets), 3, 6))
    for i, s in enumerate(tasks):                                  # per-item losses around those means, 3 seeds
        write_seeded(inputs.transfer / s, {t: losses.loc[s, t] + noise[i, j] for j, t in enumerate(targets)})
    aff = pd.DataFrame(0.1, index=tasks, columns=targets)
    aff.loc["rgb2mist", "rgb2depth"] = aff.loc["rgb2depth", "rgb2mist"] = 0.6
    aff.loc["random"] = 0.01
    inputs.first_order.mkdir(parents=True)
    losses.rename_axis("source").to_csv(inputs.first_order / "first_order_losses.csv")
    aff.rename_axis("source").to_csv(inputs.first_order / "first_order_affinities.csv")
    _png(inputs.first_order / "first_order.png", 1)
    item_losses = {t: {s: losses.loc[s, t] + noise[i, j, 0] for i, s in enumerate(tasks)} for j, t in enumerate(targets)}
    inputs.checks.parent.mkdir(parents=True)
    inputs.checks.write_text(json.dumps(run_checks(aff.rename_axis("source"), item_losses, rounds=5)))   # one seed
    inputs.affinities.write_text("target,sources,order,affinity,quality,gain,mean_loss\n")
    rows = []
    for k in MAX_ORDERS:
        for b in BUDGETS:
            supervised = ["rgb2mist", "edge2d"][:b]
            per_target = {t: {"sources": ["self"] if t in supervised else ["rgb2mist"], "affinity": 0.5,
                              "quality": 0.25 * b, "gain": 0.5 + 0.1 * k} for t in targets}
            sol = {"status": "optimal", "objective": 1.0 + b, "budget": float(b), "max_order": k,
                   "supervised": supervised, "per_target": per_target}
            path = inputs.taxonomy / "solutions" / f"b{b}_k{k}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(sol))
            rows.append({"max_order": k, "budget": b, "objective": 1.0 + b, "gain": 0.5 + 0.1 * k,
                         "quality": 0.25 * b, "supervised": b, "transferred": 4 - b, "status": "optimal"})
    pd.DataFrame(rows).to_csv(inputs.taxonomy / "grid.csv", index=False)
    # a novel task at two budgets: served within noise of scratch, then better than it
    novel = [{"task": "edge2d", "budget": b, "max_order": max(MAX_ORDERS), "chosen": "rgb2mist", "chosen_loss": 0.5,
              "best_single": "rgb2mist", "best_single_loss": 0.5, "scratch_loss": 0.6, "pixels_loss": 0.7,
              "vs_scratch": -0.1, "vs_scratch_lo": lo, "vs_scratch_hi": hi, "vs_best_single": 0.0,
              "vs_best_single_lo": 0.0, "vs_best_single_hi": 0.0} for b, lo, hi in ((1, -0.2, 0.01), (2, -0.2, -0.02))]
    pd.DataFrame(novel).to_csv(inputs.taxonomy / "novel.csv", index=False)
    _png(inputs.taxonomy / "tree" / "similarity_tree.png", 2)
    (inputs.taxonomy / "tree" / "similarity_tree.json").write_text(json.dumps({"leaves": targets[::-1]}))
    # check_params has nothing to time, and DVC keeps a removed task's entries (curvature) in the lock
    inputs.lock.write_text("schema: '2.0'\nstages:\n  check_params: {cmd: x}\n  render: {cmd: x}\n"
                           "  train_task@curvature: {cmd: x}\n" + "".join(f"  train_task@{t}: {{cmd: x}}\n  transfer@{t}: {{cmd: x}}\n" for t in tasks))
    inputs.timings.mkdir(parents=True)
    for i, t in enumerate(tasks):            # render records no timing here; every other stage does, with
        inside = {"train_seconds": 1.5 + i} if t != "random" else {}      # what it timed inside itself
        (inputs.timings / f"train_task@{t}.json").write_text(json.dumps({"seconds": 4.0 + i, "loadavg": 0.1, **inside}))
        (inputs.timings / f"transfer@{t}.json").write_text(json.dumps(
            {"seconds": 5.0, "loadavg": 0.1, "load_seconds": 0.5, "encode_seconds": 0.25, "train_seconds": 2.0, "targets": 3}))
    return inputs, params


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs, params = write_report_inputs(root)
    out = root / "reports"
    write_report(inputs, params, html=out / "index.html", markdown=out / "README.md",
                 figures_dir=out / "report_figures", root=root)
    return out


def test_page_has_every_section_and_only_embedded_images(built):
    page = (built / "index.html").read_text()
    for sid in SECTION_IDS:
        assert page.count(f'<section id="{sid}">') == 1, sid
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 1 + 1 + 1 + len(BUDGETS) + 1 + 1      # bank, curves, fig. 7, graphs, sweep, tree
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(src|href)="(https?:)?//', page)        # nothing from the network
    assert "<script" not in page


def test_page_findings(built):
    page = (built / "index.html").read_text()
    # rgb2depth: 0.8 vs trivial 0.5 -> ratio 1.6, flagged; rgb2mist's transfer (0.6) beats its self (0.8)
    assert "<td>rgb2depth</td><td>0.8</td><td>0.5</td><td>1.6</td><td>0.25</td><td class=\"bad\">no</td>" in page
    assert "Not beating it: rgb2depth." in page
    assert "<td>rgb2depth</td><td>0.8</td><td>rgb2mist</td><td>0.6</td><td class=\"bad\">no</td>" in page
    assert "for 3 of 4 targets; not for rgb2depth." in page
    assert "<td>rgb2depth</td><td>rgb2mist (0.600)</td>" in page          # top source
    assert "<td>2</td><td>2</td><td>optimal</td><td>rgb2mist, edge2d</td>" in page
    assert "<td>train_task@rgb2mist</td><td>5</td><td>training 2.5 s</td>" in page
    assert "train_task@curvature" not in page and "<td>check_params</td>" not in page
    assert "<td>transfer@rgb2depth</td><td>5</td><td>load 0.5 s, encode 0.2 s, 3 readouts 2.0 s</td>" in page
    assert "<td>render</td><td>n/a</td><td>not timed here (" in page
    assert "<td>train_task@random</td><td>8</td><td>untrained encoder (nothing to train)</td>" in page
    total = sum(4.0 + i for i in range(len(FIXTURE_TASKS))) + 5.0 * len(FIXTURE_TASKS)
    assert f"<td>total (sum of the stages)</td><td>{total:g}</td>" in page


def test_novel_tasks_are_compared_with_scratch_and_the_best_single_source(built):
    page = (built / "index.html").read_text()
    section = re.search(r'<section id="novel-tasks">.*?</section>', page, re.S).group(0)
    assert "<td>edge2d</td><td>1</td><td>rgb2mist</td><td>rgb2mist</td><td>0.6000</td>" in section
    assert "-0.1000 [-0.2000, +0.0100]</td><td>+0.0000 [+0.0000, +0.0000]</td><td>within noise of scratch</td>" in section
    assert "<td>beats scratch</td>" in section


def test_markdown_mentions_the_same_findings(built):
    md = (built / "README.md").read_text()
    for sid in SECTION_IDS:
        assert f'<a id="{sid}"></a>' in md
    assert "Not beating it: rgb2depth." in md and "for 3 of 4 targets; not for rgb2depth." in md
    assert "| rgb2depth | 0.8 | 0.5 | 1.6 | 0.25 | no |" in md
    page = (built / "index.html").read_text()
    checks = re.search(r'<section id="known-structure">.*?</section>', page, re.S).group(0)
    rows = re.findall(r"<tr><td>(\w+)</td>.*?<td class=\"\w+\">([a-z/]+)</td><td>([0-9/]*)</td><td>([0-9.]*)</td></tr>",
                      checks)
    assert len(rows) == len(EXPECTATIONS)
    for name, status, seeds, share in rows:
        assert re.search(rf"^\| {name} \|.*\| {re.escape(status)} \| {re.escape(seeds)} \| {re.escape(share)} \|$",
                         md, re.M), name
        assert (share == "") == (status == NA) and (status == NA or 0 <= float(share) <= 1)
        assert (seeds == "") == (status == NA) and (status == NA or seeds in ("0/1", "1/1"))   # one seed here
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert "figures/bank_samples.png" in links and "report_figures/sweep.png" in links
    assert all((built / link).is_file() for link in links)


def test_missing_input_is_one_line_naming_the_file_and_command(tmp_path):
    inputs, _ = write_report_inputs(tmp_path)
    write_params(tmp_path / "params.yaml", {"tasks": {t: {"source_only": o} for t, o in FIXTURE_TASKS.items()},
                                            "taxonomy": {"budgets": [1, 2], "max_orders": [1, 2]}})
    inputs.affinities.unlink()
    cmd = [sys.executable, str(ROOT / "stages/report.py"), "--params", "params.yaml",
           "--task-list", "outputs/task_list.json", "--models", "models", "--transfer", "outputs/transfer",
           "--bank-samples", "reports/figures/bank_samples.png", "--first-order", "reports/affinity",
           "--affinities", "reports/affinities.csv", "--taxonomy", "reports/taxonomy", "--checks", "reports/checks/checks.json",
           "--html", "reports/index.html", "--markdown", "reports/README.md", "--figures", "reports/report_figures"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert result.stderr == "error: reports/affinities.csv is missing: run `dvc repro affinity`\n"
    assert not (tmp_path / "reports/index.html").exists()


def test_checks_stage_writes_the_checks_and_their_metrics(tmp_path):
    """Stage checks: every expectation with its finding and bootstrap pass share (checks.rounds of
    them), and the numbers alone as a DVC metric."""
    write_report_inputs(tmp_path)
    write_params(tmp_path / "params.yaml", {"tasks": {t: {"source_only": o} for t, o in FIXTURE_TASKS.items()},
                                            "checks": {"rounds": 7, "seed": 1}})
    out, metrics = tmp_path / "c/checks.json", tmp_path / "c/metrics.json"
    cmd = [sys.executable, str(ROOT / "stages/checks.py"), "--params", "params.yaml", "--first-order",
           "reports/affinity/first_order_affinities.csv", "--transfer", "outputs/transfer", "--out", str(out),
           "--metrics", str(metrics)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    checks, numbers = json.loads(out.read_text()), json.loads(metrics.read_text())
    evaluated = [c for c in checks["checks"] if c["status"] != NA]
    assert checks["rounds"] == 7 and len(checks["checks"]) == len(EXPECTATIONS) and evaluated
    numbers = numbers["checks"]
    assert numbers["passed"] == checks["passed"] == sum(c["status"] == PASS for c in evaluated)
    assert numbers == {"passed": checks["passed"], "evaluated": len(evaluated), "seeds": 3,
                       "seed_pass_rate": {c["name"]: c["seed_pass_rate"] for c in evaluated},
                       "pass_share": {c["name"]: c["pass_share"] for c in evaluated}}
    assert all(share * 7 == round(share * 7) and 0 <= share <= 1 for share in
               (c["pass_share"] for c in evaluated))
    for c in evaluated:        # each seed's readouts alone: three outcomes per check
        assert len(c["seed_passes"]) == 3 and c["seed_pass_rate"] == pytest.approx(np.mean(c["seed_passes"]))


def test_pass_shares_tell_firm_ties_from_chance():
    """depth <-> distance is firm in the losses below (every item); edge2d's 2D preference is a coin flip."""
    from taskonomy.analysis.checks import pass_shares

    rng = np.random.default_rng(1)
    a = structured_affinities()
    n = 40
    losses = {t: {s: (1 - a.loc[s, t] + rng.normal(0, 0.05, n)).astype(np.float32) for s in a.index}
              for t in a.columns}
    firm = pass_shares(losses, rounds=20)
    assert firm["depth_mist"] == 1.0 and firm["random_last"] == 1.0 and set(firm) == {e.name for e in EXPECTATIONS}
    for s in ("keypoint2d", "segment2d", "segment25d", "reshade"):   # edge2d: 2D and 3D sources alike
        losses["edge2d"][s] = (0.5 + rng.normal(0, 0.05, n)).astype(np.float32)
    assert 0 < pass_shares(losses, rounds=40)["gradients_2d"] < 1
    losses["rgb2depth"]["rgb2mist"] = losses["rgb2depth"]["random"] + 1          # distance now useless for depth
    assert pass_shares(losses, rounds=10)["depth_mist"] == 0.0


def test_finetune_section_shows_findings_table_and_notes(tmp_path):
    """The fine-tuning section: the protocol, each target's finding, the figure, a row per run (a role
    without a source shows its note), differences with their intervals; absent when not run."""
    from taskonomy.report.build import finetune_section
    from taskonomy.report.page import Image, Table, Text

    params = from_dict(Params, {"tasks": {"rgb2depth": {}, "class_scene": {}},
                                "finetune": {"targets": ["rgb2depth", "class_scene"]}})
    table = tmp_path / "finetune.csv"
    pd.DataFrame([
        {"target": "rgb2depth", "role": "taxonomy", "sources": "rgb2sfnorm", "mode": "full", "items": 240,
         "schedule": 1.0, "seed": 0, "mean_loss": 0.41, "diff_vs_scratch": -0.05, "diff_vs_scratch_lo": -0.07,
         "diff_vs_scratch_hi": -0.03, "diff_vs_frozen": 0.01, "diff_vs_frozen_lo": -0.01, "diff_vs_frozen_hi": 0.02,
         "label": "rgb2sfnorm/full/n240/x1/s0", "note": ""},
        {"target": "class_scene", "role": "taxonomy", "sources": "", "mode": "", "items": "", "schedule": "",
         "seed": "", "mean_loss": "", "label": "", "note": "supervised by the taxonomy: no source chosen"},
    ]).to_csv(table, index=False)
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "findings.json").write_text(json.dumps(
        {"findings": {"rgb2depth": "rgb2depth: found A.", "class_scene": "class_scene: found B."}}))
    (tmp_path / "finetune" / "finetune.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    section = finetune_section(table, params)
    texts = [b.text for b in section.blocks if isinstance(b, Text)]
    assert "rgb2depth: found A." in texts and "class_scene: found B." in texts
    assert any(isinstance(b, Image) for b in section.blocks)
    rows = next(b for b in section.blocks if isinstance(b, Table)).rows
    assert rows[0][:7] == ("rgb2depth", "taxonomy", "rgb2sfnorm", "full", 240, "1x", "0.4100")
    assert rows[0][7:] == ("-0.050 [-0.070, -0.030]", "+0.010 [-0.010, +0.020]")
    assert rows[1][:3] == ("class_scene", "taxonomy", "supervised by the taxonomy: no source chosen")
    assert finetune_section(None, params).blocks[0].text.startswith("Not part of this run")


def test_best_transfers_show_intervals_and_whether_the_best_is_apart():
    """Per target: the best transfers of any order with their intervals, never self, random or a set holding
    the target itself; 'apart' only when the best one's interval lies above the runner-up's."""
    from taskonomy.report.build import best_transfers

    rows = [("a", "self", 0, 0.5, 0.4, 0.6), ("a", "a", 1, 0.3, 0.2, 0.4), ("a", "b__a", 2, 0.25, 0.2, 0.3),
            ("a", "random", 1, 0.2, 0.1, 0.3), ("a", "b", 1, 0.15, 0.12, 0.18), ("a", "c", 1, 0.05, 0.02, 0.08),
            ("d", "self", 0, 0.5, 0.4, 0.6), ("d", "b", 1, 0.26, 0.2, 0.3), ("d", "c", 1, 0.24, 0.19, 0.29)]
    table = pd.DataFrame(rows, columns=["target", "sources", "order", "affinity", "affinity_lo", "affinity_hi"])
    (a, d) = best_transfers(table, 3)
    assert a == ("a", "b 0.150 [0.120, 0.180]", "c 0.050 [0.020, 0.080]", "", "yes")
    assert d[0] == "d" and d[1].startswith("b 0.260") and d[-1] == "no"     # overlapping: within noise
