"""The whole DAG under `dvc repro` on a tiny configuration, and granular reruns after a params edit.

One temporary copy of the repository runs every stage (render -> report) over a task list that
covers every task kind and input transform; the tests then assert on its outputs and on which stages
a one-task edit reruns (read from what `dvc repro` printed, since `dvc status` lists only the first
stale stages).
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import BIN, make_dvc_repo

pytestmark = pytest.mark.slow

# One task of every kind and transform: dense regression (plain, noisy input), dense classification,
# dense embedding, soft and hard classification, low-dimensional regression, pair regression, pair
# classification, triplet, tiles; source-only tasks and the random encoder.
TASKS = {
    "rgb2depth": {"source_only": False},
    "rgb2sfnorm": {"source_only": False},
    "denoise": {"source_only": False},
    "segment2d": {"source_only": False},
    "segmentsemantic": {"source_only": False},
    "class_object": {"source_only": False},
    "class_scene": {"source_only": False},
    "room_layout": {"source_only": False},
    "fix_pose": {"source_only": False},
    "point_match": {"source_only": False},
    "ego_motion": {"source_only": False},
    "reshade": {"source_only": False, "target_only": True},       # a novel task: no network on the train split
    "colorization": {"source_only": True},
    "jigsaw": {"source_only": True},
    "random": {"source_only": True},
}
TARGETS = [t for t, p in TASKS.items() if not p["source_only"]]
NOVEL = [t for t, p in TASKS.items() if p.get("target_only")]
SOURCES = [t for t in TASKS if t not in NOVEL]
TINY = {
    "tasks": TASKS,
    "render": {"resolution": 16, "scenes": {"train": 6, "transfer": 4, "test": 3}, "chunk_scenes": 4,
               "sample_scenes": 1, "workers": 1},
    "train_task": {"width": 4, "epochs": 1, "batch_size": 16, "threads": 1},
    "transfer": {"epochs": 1, "batch_size": 16, "max_order": 2, "beam": 3, "workers": 1, "seeds": 2},
    "affinity": {"bootstrap": 40},
    "taxonomy": {"budgets": [1, 2, 3], "max_orders": [1, 2], "stability": 20},
    "finetune": {"targets": ["rgb2depth", "class_scene"], "sizes": [8, 24], "train_items": 16, "batch_size": 8,
                 "budget": 2, "max_order": 2, "bootstrap": 50, "workers": 1},
    "multitask": {"tasks": ["rgb2depth", "rgb2sfnorm", "segmentsemantic", "class_scene", "fix_pose"], "seeds": [0, 1],
                  "weightings": ["equal", "uncertainty"], "budget": 2, "max_order": 2, "validation_items": 16,
                  "tag_every": 1, "bootstrap": 50, "workers": 1},
    "adapt": {"tasks": ["rgb2depth", "segmentsemantic", "class_scene"], "scenes": {"target_train": 4}, "seeds": [0, 1],
              "validation_items": 16, "bootstrap": 50, "workers": 1},
}
FINETUNE = TINY["finetune"]["targets"]
GROUPINGS = ["single", "taxonomy", "all", "random"]


def _stages_run(stdout: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", stdout))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The repository copy after a full `dvc repro`, and the stages that repro ran."""
    tmp = tmp_path_factory.mktemp("pipeline")
    overrides = dict(TINY)
    repo = make_dvc_repo(tmp, overrides)
    # make_dvc_repo merges mappings: the task list itself must be replaced, not merged.
    params = yaml.safe_load((repo.path / "params.yaml").read_text())
    params["tasks"] = TASKS
    (repo.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the committed default run's per-task files of tasks the tiny list drops: DVC leaves the outputs of
    # stages that a params edit removed where they are, as a user would find them, so they go here
    for folder in ("reports/metrics/networks", "reports/curves"):
        for path in (repo.path / folder).glob("*"):
            if path.name.removesuffix(".json") not in TASKS:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "tiny task list")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shutil.copy2(repo.path / "dvc.lock", tmp / "serial-dvc.lock")    # as serial `dvc repro` left it
    return repo, _stages_run(proc.stdout)


def test_every_stage_ran(pipeline):
    _, ran = pipeline
    expected = {"check_params", "render", "task_list", "pixels", "affinity_first", "checks", "transfer_high", "affinity", "taxonomy",
                "finetune_summary", "multitask_summary", "render_target", "adapt_summary", "adapt_taxonomy",
                "report"} | {f"finetune@{t}" for t in FINETUNE}
    expected |= {f"adapt@{t}" for t in TINY["adapt"]["tasks"]}
    expected |= {f"multitask@{g}" for g in GROUPINGS}
    expected |= {f"{stage}@{t}" for t in TASKS for stage in ("train_task", "transfer")}
    assert expected <= ran


def test_outputs_are_consistent(pipeline):
    repo, _ = pipeline
    path = repo.path
    table = pd.read_csv(path / "reports/affinities.csv")
    assert set(table.target) == set(TARGETS)
    for target, rows in table.groupby("target"):
        # AHP: one eigenvector per target over all its transfers (pixels stays out).
        assert rows.loc[rows.sources != "pixels", "affinity"].sum() == pytest.approx(1.0, abs=1e-6)
        first = rows[rows.order == 1]
        assert set(first.sources) == set(SOURCES)  # every source, incl. source-only, random and t <- t
        assert (rows.order == 2).any()  # the beam formed pairs
        assert rows.quality.between(0, 1).all() and rows.gain.between(0, 1).all()
        n_items = len(np.load(path / f"models/{target}/test_losses.npy"))
        with np.load(path / "outputs/transfer/random/losses.npz") as z, \
                np.load(path / "outputs/transfer/random/seed_losses.npz") as seeds:
            assert z[target].shape == (n_items,) and seeds[target].shape == (2, n_items)   # transfer.seeds: 2
            np.testing.assert_allclose(z[target], seeds[target].astype(np.float64).mean(0), rtol=1e-6)
        intervals = rows.dropna(subset=["affinity_lo"])       # every transfer, self and random: an interval
        assert len(intervals) == len(rows) - 1 and (intervals.affinity_lo <= intervals.affinity_hi).all()
    # the checks per readout seed, and the edge stability of every taxonomy cell
    checks = json.loads((path / "reports/checks/checks.json").read_text())
    assert checks["seeds"] == 2 and all(len(c["seed_passes"]) == 2 for c in checks["checks"] if c["status"] != "n/a")
    stability = pd.read_csv(path / "reports/taxonomy/stability.csv", keep_default_na=False)
    assert len(stability.groupby(["max_order", "budget"])) == 6 and stability.share.between(0, 1).all()
    solution = json.loads((path / "reports/taxonomy/solutions/b2_k2.json").read_text())
    assert solution["status"] == "optimal" and len(solution["supervised"]) <= 2
    served = set(solution["supervised"]) | set(solution["transfers"])
    assert set(TARGETS) <= served
    assert not set(NOVEL) & set(solution["supervised"]) and set(NOVEL) <= set(solution["transfers"])
    html = (path / "reports/index.html").read_text()
    for section in ("task-bank", "task-networks", "affinities", "taxonomy", "gain-quality",
                    "similarity-tree", "known-structure", "finetune", "multitask", "adapt", "provenance"):
        assert f'id="{section}"' in html
    # every stage before the report timed itself, and the provenance table shows it
    _, ran = pipeline
    for stage in ran - {"report", "check_params"}:
        seconds = json.loads((path / f"logs/timings/{stage}.json").read_text())["seconds"]
        assert 0 < seconds < 600, stage
    assert f"<td>transfer@rgb2depth</td><td>{_fmt(path, 'transfer@rgb2depth')}</td>" in html


def test_a_novel_task_is_served_from_the_others_and_compared_with_scratch(pipeline):
    repo, _ = pipeline
    path = repo.path
    for task in NOVEL:
        record = json.loads((path / f"models/{task}/metrics.json").read_text())
        assert record["trained_on"] == "transfer"                # from scratch on the small data only
        assert json.loads((path / f"outputs/transfer/{task}/metrics.json").read_text())["target_only"] is True
        with np.load(path / f"outputs/transfer/{task}/losses.npz") as z:
            assert not z.files                                     # never a source
    first = pd.read_csv(path / "reports/affinity/first_order_affinities.csv", index_col=0)
    assert not set(NOVEL) & set(first.index) and set(NOVEL) <= set(first.columns)
    gold = json.loads((path / "reports/metrics/affinity.json").read_text())["gold_standard"]
    assert gold["targets"] == len(TARGETS) - len(NOVEL)
    novel = pd.read_csv(path / "reports/taxonomy/novel.csv")
    params = yaml.safe_load((path / "params.yaml").read_text())["taxonomy"]
    assert len(novel) == len(NOVEL) * len(params["budgets"]) * len(params["max_orders"])
    assert set(novel.task) == set(NOVEL) and novel.chosen.notna().all()
    for _, row in novel.iterrows():
        assert row.vs_scratch_lo <= row.vs_scratch <= row.vs_scratch_hi
        assert row.vs_scratch == pytest.approx(row.chosen_loss - row.scratch_loss, abs=1e-5)
        assert row.best_single_loss <= row.chosen_loss + 1e-6 or "__" in row.chosen   # best first-order source
    html = (path / "reports/index.html").read_text()
    section = re.search(r'<section id="novel-tasks">.*?</section>', html, re.S).group(0)
    assert all(f"<td>{t}</td>" in section for t in NOVEL)


def test_multitask_groups_by_the_taxonomy_and_compares_with_the_task_networks(pipeline):
    repo, _ = pipeline
    path = repo.path
    table = pd.read_csv(path / "reports/multitask.csv", keep_default_na=False)
    assert set(table.grouping) == set(GROUPINGS)
    studied = {"rgb2depth", "rgb2sfnorm", "segmentsemantic", "class_scene"}      # fix_pose: pairs, left out
    for (grouping, weighting, seed), rows in table.groupby(["grouping", "weighting", "seed"]):
        assert set(rows.task) == studied, (grouping, weighting, seed)
    for task, rows in table.groupby("task"):
        assert np.allclose(rows.single_loss, np.load(path / f"models/{task}/test_losses.npy").mean())
    solution = json.loads((path / "reports/taxonomy/solutions/b2_k2.json").read_text())
    first_source = {t: s[0] for t, s in solution["transfers"].items()}
    for group in table[table.grouping == "taxonomy"].group.unique():
        tasks = group.split("+")
        roots = {t if t in solution["supervised"] else first_source[t] for t in tasks}
        assert len(roots) == 1, group                    # one supervised task and the targets it serves
    deltas = pd.read_csv(path / "reports/multitask/delta.csv")
    assert {(g, w) for g in GROUPINGS[1:] for w in ("equal", "uncertainty")} <= set(zip(deltas.grouping, deltas.weighting))
    assert (deltas.delta_p_lo <= deltas.delta_p_hi).all()
    findings = json.loads((path / "reports/multitask/findings.json").read_text())
    assert "fix_pose" in findings["left_out"]
    html = (path / "reports/index.html").read_text()
    assert "fix_pose: its items are 2-view tuples" in html


def test_finetune_reads_the_taxonomy_and_compares_every_run(pipeline):
    """Every role of every fine-tuned target: the taxonomy's source set (or the note that the taxonomy
    supervises the target), each mode at each size, scratch at each schedule, and comparisons."""
    repo, _ = pipeline
    path = repo.path
    solution = json.loads((path / "reports/taxonomy/solutions/b2_k2.json").read_text())
    table = pd.read_csv(path / "reports/finetune.csv", dtype={"sources": str, "note": str})
    for target in FINETUNE:
        rows = table[table.target == target]
        tax = rows[rows.role == "taxonomy"]
        if target in solution["transfers"]:
            assert set(tax.sources) == {"__".join(solution["transfers"][target])}
            assert len(tax) == 3 * 2 and set(tax["mode"]) == {"frozen", "partial", "full"}
        else:
            assert len(tax) == 1 and tax.note.iloc[0].startswith("supervised by the taxonomy")
        scratch = rows[rows.role == "scratch"]
        assert sorted(zip(scratch["items"], scratch.schedule)) == [(8, 1.0), (8, 3.0), (24, 1.0), (24, 3.0)]
        assert set(rows[rows.role == "random"].sources) == {"random"}
        runs = rows[rows["mode"].notna()]
        assert runs.mean_loss.gt(0).all()
        compared = runs[~((runs.role == "scratch") & (runs.schedule == 1.0))]
        assert compared.win_vs_scratch.between(0, 1).all()
        assert (compared.diff_vs_scratch_lo <= compared.diff_vs_scratch + 1e-9).all()
        assert (compared.diff_vs_scratch <= compared.diff_vs_scratch_hi + 1e-9).all()
    findings = json.loads((path / "reports/finetune/findings.json").read_text())["findings"]
    assert set(findings) == set(FINETUNE) and all("scratch" in text for text in findings.values())


def test_adapt_compares_every_method_between_source_only_and_the_oracle(pipeline):
    """Every adapted task: source-only, its methods and the oracle at every seed, on a target domain
    whose geometric labels are the source test split's; the taxonomy recomputed under the shift."""
    repo, _ = pipeline
    path = repo.path
    table = pd.read_csv(path / "reports/adapt.csv", keep_default_na=False, dtype={"seed": str})
    methods = {"rgb2depth": {"source_only", "dann", "oracle"},
               "segmentsemantic": {"source_only", "dann", "entropy", "oracle"},
               "class_scene": {"source_only", "dann", "entropy", "oracle"}}
    assert set(table.task) == set(methods)
    for task, rows in table.groupby("task"):
        assert set(rows.method) == methods[task]
        assert sorted(set(rows.seed)) == ["0", "1", "mean"]
        reused = rows[(rows.method == "source_only") & (rows.seed == "0")]
        assert float(reused.source_loss.iloc[0]) == pytest.approx(np.load(path / f"models/{task}/test_losses.npy").mean(),
                                                                  rel=1e-5)
        # ... and scored on the target domain as adapt_taxonomy rescored it
        rescored = np.load(path / f"outputs/adapt_taxonomy/models/{task}/test_losses.npy").mean()
        assert float(reused.target_loss.iloc[0]) == pytest.approx(rescored, rel=1e-6)
        means = rows[rows.seed == "mean"].set_index("method")
        if float(means.loc["oracle", "target_loss"]) < float(means.loc["source_only", "target_loss"]):
            assert float(means.loc["source_only", "gap_closed"]) == 0.0 and float(means.loc["oracle", "gap_closed"]) == 1.0
        else:      # the tiny oracle no better than source-only: no gap to close, none reported
            assert means.loc["source_only", "gap_closed"] == "" and means.loc["oracle", "gap_closed"] == ""
    target = np.load(path / "data/target/target_test/rgb2depth.npy")
    assert np.array_equal(target, np.load(path / "data/bank/test/rgb2depth.npy"))
    assert not np.array_equal(np.load(path / "data/target/target_test/rgb.npy"), np.load(path / "data/bank/test/rgb.npy"))
    best = pd.read_csv(path / "reports/adapt/taxonomy/best_sources.csv")
    assert set(best.target) == set(TARGETS)
    html = (path / "reports/index.html").read_text()
    assert "Selected on target labels" in html and "The taxonomy under the shift" in html


# README, "Experiments": `dvc exp show --only-changed --drop` this, i.e. without the dependencies' hashes
EXP_SHOW_DROP = "Created|models$|(data|outputs|stages|taskonomy)/|reports/(?!metrics/)"
FAMILIES = ["affinity", "checks", "taxonomy", "finetune", "multitask", "adapt", "adapt_taxonomy"]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_metrics_are_headlines_by_family_in_git(pipeline):
    """`dvc metrics show` reads the headline files under reports/metrics (tracked in git), one per family
    and one per task network, and nothing from the ignored folders; each is short and agrees with the
    full record it summarises."""
    repo, _ = pipeline
    path = repo.path
    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    files = {f: m["data"] for rev in shown.values() for f, m in rev["data"].items()}
    expected = {f"reports/metrics/networks/{t}.json" for t in TASKS} | {f"reports/metrics/{f}.json" for f in FAMILIES}
    assert set(files) == expected
    assert not repo.run("git", "check-ignore", *sorted(expected), check=False).stdout.strip()
    for family in FAMILIES:
        numbers = _flat(files[f"reports/metrics/{family}.json"])
        assert 0 < len(numbers) <= 30, (family, len(numbers))
        assert all(k.startswith(f"{family}.") or family == "affinity" for k in numbers), family  # unique column names
    record = json.loads((path / "models/rgb2depth/metrics.json").read_text())
    network = files["reports/metrics/networks/rgb2depth.json"]
    assert network["test_loss"] == pytest.approx(np.load(path / "models/rgb2depth/test_losses.npy").mean(), rel=1e-5)
    assert network == {k: pytest.approx(record[k], abs=1e-6) for k in network}
    assert files["reports/metrics/networks/random.json"] == {}
    grid = pd.read_csv(path / "reports/taxonomy/grid.csv")
    for budget, cell in files["reports/metrics/taxonomy.json"]["taxonomy"]["k2"].items():
        row = grid[(grid.max_order == 2) & (grid.budget == int(budget[1:]))].iloc[0]
        assert cell["objective"] == pytest.approx(row.objective, rel=1e-5)
    assert set(files["reports/metrics/finetune.json"]["finetune"]) == set(FINETUNE)
    assert set(files["reports/metrics/adapt.json"]["adapt"]) <= set(TINY["adapt"]["tasks"])
    gold = files["reports/metrics/affinity.json"]["gold_standard"]
    assert gold["targets"] == len(TARGETS) - len(NOVEL) and 0 <= gold["self_beats_every_order"] <= gold["self_beats_first_order"] <= 1
    # the networks as one short table: a row per task, a column per number
    table = repo.dvc("metrics", "show", "-R", "reports/metrics/networks").stdout.strip().splitlines()
    assert len(table) == 1 + len(TASKS) and table[0].split() == ["Path", *sorted(network)]


def _fmt(path, stage: str) -> str:
    return f'{json.loads((path / f"logs/timings/{stage}.json").read_text())["seconds"]:.4g}'


def test_a_fresh_clone_with_the_cache_finds_nothing_changed(pipeline, tmp_path):
    """The lock committed with what the run wrote: a clone of that commit, given the run's DVC cache,
    checks every output out and finds no stage changed (no uncached output left behind in an ignored
    folder, which a clone or a queued experiment's copy would lack and rerun)."""
    repo, _ = pipeline
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "the run, with its lock")
    clone = tmp_path / "clone"
    repo.run("git", "clone", "-q", str(repo.path), str(clone))
    fresh = type(repo)(clone, repo.env)
    fresh.dvc("cache", "dir", str(repo.path / ".dvc" / "cache"))
    fresh.dvc("checkout", "-q")
    status = fresh.dvc("status")
    assert "up to date" in status.stdout.lower(), status.stdout[-3000:]


def test_the_concurrent_runner_records_the_serial_runs_hashes(pipeline, tmp_path):
    """`taskonomy repro --jobs 2` from the same commit, in a clone with an empty DVC cache: every stage
    runs again, two at a time, and dvc.lock gets the serial run's entries, hash for hash (no output holds
    a time), except the report's own page, which shows the timings."""
    repo, _ = pipeline
    start = repo.run("git", "log", "--format=%H", "--grep", "tiny task list").stdout.split()[0]
    clone = tmp_path / "clone"
    repo.run("git", "clone", "-q", str(repo.path), str(clone))
    fresh = type(repo)(clone, {**repo.env, "PYTHONPATH": str(clone)})       # the clone's own code
    fresh.run("git", "checkout", "-q", start)
    proc = fresh.run(str(BIN / "python"), "-m", "taskonomy", "repro", "--jobs", "2", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "running (2 of 2 at once)" in proc.stderr
    serial = yaml.safe_load((repo.path.parent / "serial-dvc.lock").read_text())["stages"]
    concurrent = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert set(concurrent) == set(serial)
    differ = {s: sorted(o["path"] for o in serial[s].get("outs", []) + serial[s].get("deps", [])
                        if o not in concurrent[s].get("outs", []) + concurrent[s].get("deps", []))
              for s in serial if concurrent[s] != serial[s]}
    assert list(differ) == ["report"], differ
    report = {o["path"] for o in serial["report"]["outs"] if o not in concurrent["report"]["outs"]}
    assert report <= {"reports/index.html", "reports/README.md"}, report
    assert "up to date" in fresh.dvc("status").stdout.lower()


def test_one_task_edit_reruns_only_its_stages(pipeline):
    """As a DVC user changes a param: an experiment (`dvc exp run -S`) on top of the finished run."""
    repo, _ = pipeline
    # a key params.yaml does not spell out is refused by DVC itself, before any stage runs ...
    refused = repo.dvc("exp", "run", "-S", "tasks.rgb2depth.epochs=2", check=False)
    assert refused.returncode != 0 and "Running stage" not in refused.stdout
    assert "tasks.rgb2depth.epochs" in refused.stderr
    # a bad value stops at the first stage, check_params, with the line `taskonomy check-params` gives
    bad = repo.dvc("exp", "run", "-S", "train_task.arch=huge", check=False)
    assert bad.returncode != 0 and _stages_run(bad.stdout) == {"check_params"}, bad.stdout[-2000:]
    line = repo.run(str(BIN / "python"), "-m", "taskonomy", "check-params", "params.yaml", check=False).stderr.strip()
    assert line.startswith("error: params.yaml: train_task.arch") and len(line.splitlines()) == 1
    assert line in bad.stderr.splitlines()
    repo.run("git", "checkout", "params.yaml")
    # ... and added with a leading + (the README says so), on top of the committed run
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "the run, with its lock", "--allow-empty")
    proc = repo.dvc("exp", "run", "-S", "+tasks.rgb2depth.epochs=2", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert yaml.safe_load((repo.path / "params.yaml").read_text())["tasks"]["rgb2depth"]["epochs"] == 2
    ran = _stages_run(proc.stdout)
    assert {"train_task@rgb2depth", "transfer@rgb2depth", "affinity", "taxonomy"} <= ran
    others = {f"{stage}@{t}" for t in TASKS if t != "rgb2depth" for stage in ("train_task", "transfer")}
    assert not ran & others, f"reran other tasks' stages: {sorted(ran & others)}"
    assert not ran & {"render", "pixels", "render_target"}
    assert "adapt@rgb2depth" in ran and not ran & {"adapt@segmentsemantic", "adapt@class_scene"}
    # Nothing is stale afterwards.
    status = repo.dvc("status")
    assert "up to date" in status.stdout.lower() or status.stdout.strip() == ""
    # committed, `dvc metrics diff` between the two commits lists rgb2depth's network and no other
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "rgb2depth: 2 epochs")
    diff = json.loads(repo.dvc("metrics", "diff", "HEAD~1", "HEAD", "--json").stdout)
    networks = {f for f in diff if f.startswith("reports/metrics/networks/")}
    assert networks == {"reports/metrics/networks/rgb2depth.json"}, sorted(diff)
    assert "test_loss" in diff["reports/metrics/networks/rgb2depth.json"]
    # ... and `dvc plots diff` draws rgb2depth's training curves (DVCLive's files, in git) and the sweep
    plots = json.loads(repo.dvc("plots", "diff", "HEAD~1", "HEAD", "--json").stdout)
    names = set(plots.get("data", plots))
    assert {"reports/curves/rgb2depth/plots/metrics/train_loss.tsv",
            "reports/curves/rgb2depth/plots/metrics/test_loss.tsv"} <= names, sorted(names)[:20]
    assert "reports/taxonomy/grid.csv" in names
    # the README's `dvc exp show`: the two commits side by side, the changed param and metrics, no file hashes
    shown = repo.dvc("exp", "show", "--csv", "-n", "2", "--only-changed", "--drop", EXP_SHOW_DROP).stdout
    header = shown.splitlines()[0].split(",")
    assert "tasks.rgb2depth.epochs" in header and any(c.endswith("test_loss") for c in header), header
    assert not any(c.startswith(("data/", "stages/", "taskonomy/", "outputs/")) or c == "models" for c in header)
    assert not any("networks/" in c and "rgb2depth" not in c for c in header)
