"""Stage ``finetune_summary``: every fine-tuned target's runs compared (see
taskonomy.baselines.finetune_outputs for what ``finetune@<target>`` writes).

:func:`write_summary` writes ``reports/finetune.csv``: per row, besides the run, its win rate (share of
test images where its loss is lower) and mean loss difference, with a per-image bootstrap interval,
against scratch at the 1x schedule and against the frozen readout of the same sources, both at the
same size and seed; the DVC metrics and plot data; a figure of test loss against data size; and a
plain sentence per target of what was found. Its own module, so that an edit here reruns the summary
and not the training stages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from taskonomy.analysis.affinity import win_rates
from taskonomy.baselines.finetune import SCRATCH
from taskonomy.baselines.runs import read_table
from taskonomy.config import Params
from taskonomy.storage import atomic_write_csv, atomic_write_json

SUMMARY_FIELDS = ["target", "role", "sources", "mode", "items", "schedule", "seed", "mean_loss",
                  "win_vs_scratch", "diff_vs_scratch", "diff_vs_scratch_lo", "diff_vs_scratch_hi",
                  "win_vs_frozen", "diff_vs_frozen", "diff_vs_frozen_lo", "diff_vs_frozen_hi", "label", "note"]


def compare(a: np.ndarray, b: np.ndarray, rounds: int, seed: int) -> dict[str, float]:
    """``a`` against ``b`` on the same test images: the share where ``a``'s loss is lower (strict, as
    the affinities' win rates), and the mean of ``a - b`` with its 95% percentile bootstrap interval
    over test images (``scipy.stats.bootstrap``)."""
    from scipy.stats import bootstrap

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if np.all(d == d[0]):
        lo = hi = float(d[0])
    else:
        ci = bootstrap((d,), np.mean, n_resamples=rounds, confidence_level=0.95, method="percentile",
                       random_state=np.random.default_rng(seed), vectorized=True).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
    return {"win": float(win_rates(np.stack([a, b]))[0, 1]), "diff": float(d.mean()), "lo": lo, "hi": hi}


def summarise(params: Params, runs_dir: Path, rounds: int | None = None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every target's rows with their comparisons, and a finding per target."""
    rounds = rounds or params.finetune.bootstrap
    table, findings = [], {}
    for target in params.finetune.targets:
        rows, losses = read_table(Path(runs_dir) / target, f"finetune@{target}", "label")
        scratch = {(r["items"], r["seed"]): r["label"] for r in rows
                   if r["mode"] == SCRATCH and float(r["schedule"]) == 1.0}
        frozen = {(r["sources"], r["items"], r["seed"]): r["label"] for r in rows if r["mode"] == "frozen"}
        out = []
        for r in rows:
            row = {k: r.get(k, "") for k in SUMMARY_FIELDS}
            if r["label"]:
                for name, ref in (("scratch", scratch.get((r["items"], r["seed"]))),
                                  ("frozen", frozen.get((r["sources"], r["items"], r["seed"])))):
                    if ref and ref != r["label"]:
                        c = compare(losses[r["label"]], losses[ref], rounds, seed=len(out))
                        row.update({f"win_vs_{name}": c["win"], f"diff_vs_{name}": c["diff"],
                                    f"diff_vs_{name}_lo": c["lo"], f"diff_vs_{name}_hi": c["hi"]})
            out.append(row)
        table += out
        findings[target] = finding(target, out, losses, rounds)
    return table, findings


def _said(c: dict[str, float]) -> str:
    """'beats' / 'loses to' / 'is within noise of' from the interval of a mean loss difference."""
    return "beats" if c["hi"] < 0 else "loses to" if c["lo"] > 0 else "is within noise of"


def _span(c: dict[str, float]) -> str:
    return f"{c['diff']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}]"


def finding(target: str, rows: Sequence[dict], losses: dict[str, np.ndarray], rounds: int) -> str:
    """A plain sentence for ``target`` (its first seed): at the smallest size, does the taxonomy's
    source (in its best fine-tuned mode) beat scratch 1x and the worst source in the same mode; from
    which size scratch at its longest schedule is no longer worse than that source (each with the mean
    loss difference and its interval); and full fine-tuning against the frozen readout."""
    runs = [r for r in rows if r["label"]]
    if not runs:
        return f"{target}: no runs."
    seed = min(int(r["seed"]) for r in runs)
    runs = [r for r in runs if int(r["seed"]) == seed]
    sizes = sorted({int(r["items"]) for r in runs})
    at = lambda n, **kw: [r for r in runs if int(r["items"]) == n  # noqa: E731
                          and all(str(r[k]) == str(v) for k, v in kw.items())]
    cmp = lambda a, b: compare(losses[a["label"]], losses[b["label"]], rounds, seed=0)  # noqa: E731
    parts = []
    tax_note = next((r["note"] for r in rows if r["role"] == "taxonomy" and r["note"]), "")
    lead = "taxonomy" if any(r["role"] == "taxonomy" for r in runs) else "best"
    if tax_note:
        parts.append(f"the taxonomy chose no source ({tax_note}), so the best first-order source stands in")

    def pretrained(n: int) -> dict | None:
        tuned = [r for r in at(n, role=lead) if r["mode"] != "frozen"] or at(n, role=lead)
        return min(tuned, key=lambda r: float(r["mean_loss"])) if tuned else None

    longest = max((float(r["schedule"]) for r in runs if r["mode"] == SCRATCH), default=None)
    mine = pretrained(sizes[0])
    if mine is not None:
        scratch = [r for r in at(sizes[0], mode=SCRATCH) if float(r["schedule"]) == 1.0]
        said = (f"at {sizes[0]} items the {lead} source {mine['sources']} (its best mode: {mine['mode']}; "
                f"differences are its test loss minus the other's)")
        if scratch:
            c = cmp(mine, scratch[0])
            said += f" {_said(c)} scratch 1x ({_span(c)})"
        worst = at(sizes[0], role="worst", mode=mine["mode"])
        if worst and worst[0]["label"] != mine["label"]:
            c = cmp(mine, worst[0])
            said += f" and {_said(c)} the worst source {worst[0]['sources']} ({_span(c)})"
        parts.append(said)
        if longest is not None:
            caught = None
            for n in sizes:
                pre = pretrained(n)
                long = [r for r in at(n, mode=SCRATCH) if float(r["schedule"]) == longest]
                if pre is not None and long:
                    c = cmp(long[0], pre)
                    if c["lo"] <= 0:          # scratch no worse than the pretrained network, within noise
                        caught = (n, c)
                        break
            parts.append(f"scratch at {longest:g}x is no worse than it from {caught[0]} items on (scratch minus it: "
                         f"{_span(caught[1])})" if caught else f"scratch at {longest:g}x is still worse at {sizes[-1]} items")
        full, frozen = at(sizes[0], role=lead, mode="full"), at(sizes[0], role=lead, mode="frozen")
        if full and frozen:
            c = cmp(full[0], frozen[0])
            parts.append(f"full fine-tuning {_said(c)} the frozen readout ({_span(c)})")
    return f"{target}: " + "; ".join(parts) + "."


def headline(runs: list[dict[str, Any]]) -> dict:
    """The DVC metrics (reports/metrics/finetune.json): per target, at its smallest size and the 1x
    schedule, each role's test loss in its best mode (means over seeds; ``scratch`` for training from
    scratch) and the lead role's (taxonomy, else best) win rate against scratch in that mode."""
    out: dict[str, dict] = {}
    for target in dict.fromkeys(r["target"] for r in runs):
        rows = [r for r in runs if r["target"] == target and float(r["schedule"]) == 1.0]
        if not rows:
            continue
        smallest = min(int(r["items"]) for r in rows)
        cells: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            if int(r["items"]) == smallest:
                cells.setdefault((r["role"], r["mode"]), []).append(r)

        def mean(key: str, rs: list[dict]) -> float:
            values = [float(r[key]) for r in rs if r.get(key, "") != ""]
            return float(np.mean(values)) if values else float("nan")

        best = {}
        for (role, mode), rs in cells.items():
            if role not in best or mean("mean_loss", rs) < mean("mean_loss", cells[(role, best[role])]):
                best[role] = mode
        entry = {role: round(mean("mean_loss", cells[(role, mode)]), 6) for role, mode in best.items()}
        lead = "taxonomy" if "taxonomy" in best else "best" if "best" in best else None
        if lead is not None:
            win = mean("win_vs_scratch", cells[(lead, best[lead])])
            if win == win:
                entry["win_vs_scratch"] = round(win, 4)
        out[target] = entry
    return {"finetune": out}


def write_summary(params: Params, runs_dir: Path, table_path: Path, metrics_path: Path, plot_path: Path,
                  findings_path: Path, figure_path: Path) -> None:
    """``reports/finetune.csv``, its DVC metrics and plot data, the findings and the figure."""
    table, findings = summarise(params, runs_dir)
    atomic_write_csv(table_path, SUMMARY_FIELDS, table)
    runs = [r for r in table if r["mode"]]
    atomic_write_json(metrics_path, headline(runs))
    atomic_write_csv(plot_path, ["variant", "items", "mean_loss"],
                     ({"variant": f"{r['target']} {r['role']} {r['mode']} x{float(r['schedule']):g}",
                       "items": r["items"], "mean_loss": r["mean_loss"]} for r in runs))
    atomic_write_json(findings_path, {"findings": findings, "budget": params.finetune.budget,
                                      "max_order": params.finetune.max_order, "seeds": params.finetune.seeds,
                                      "rounds": params.finetune.bootstrap})
    figure(table, params.finetune.targets, figure_path)


ROLE_COLOURS = {"taxonomy": "tab:blue", "best": "tab:green", "worst": "tab:red", "random": "tab:gray", SCRATCH: "black"}
MODE_STYLES = {"frozen": ":", "partial": "-.", "full": "-", "l2sp": "--"}
SCHEDULE_STYLES = ("-", "--", ":", "-.")


def figure(table: Sequence[dict], targets: Sequence[str], path: Path) -> None:
    """Test loss (log scale, mean over seeds) against training items, one panel per target: colour =
    source role, line style = mode; scratch in black, one style per schedule; one legend for all."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, NullLocator

    from taskonomy.plotting import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets) + 2.2, 3.4), squeeze=False)
    runs = [r for r in table if r["mode"]]
    schedules = sorted({float(r["schedule"]) for r in runs if r["mode"] == SCRATCH})
    for ax, target in zip(axes[0], targets):
        lines: dict[tuple[str, str, float], dict[int, list[float]]] = {}
        for r in runs:
            if r["target"] == target:
                key = (r["role"], r["mode"], float(r["schedule"]))
                lines.setdefault(key, {}).setdefault(int(r["items"]), []).append(float(r["mean_loss"]))
        for (role, mode, schedule), by_size in lines.items():
            xs = sorted(by_size)
            style = (SCHEDULE_STYLES[schedules.index(schedule) % len(SCHEDULE_STYLES)] if mode == SCRATCH
                     else MODE_STYLES.get(mode, "-"))
            ax.plot(xs, [float(np.mean(by_size[n])) for n in xs], style, color=ROLE_COLOURS.get(role, "tab:purple"),
                    marker="o", ms=3, lw=2.0 if mode == SCRATCH else 1.2)
        sizes = sorted({int(r["items"]) for r in runs if r["target"] == target})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FormatStrFormatter("%.2g"))
        ax.tick_params(labelsize=7, which="both")
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("training items")
    axes[0][0].set_ylabel("mean test loss (log)")
    handles = [Line2D([], [], color=c, lw=1.5, label=role) for role, c in ROLE_COLOURS.items() if role != SCRATCH]
    handles += [Line2D([], [], color="gray", ls=st, lw=1.2, label=mode) for mode, st in MODE_STYLES.items()
                if any(r["mode"] == mode for r in runs)]
    handles += [Line2D([], [], color="black", lw=2.0, ls=SCHEDULE_STYLES[i % len(SCHEDULE_STYLES)],
                       label=f"scratch {x:g}x") for i, x in enumerate(schedules)]
    fig.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    save_figure(fig, path)
