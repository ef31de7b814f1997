"""Novel (target-only) tasks: their role in params, and the comparison of the taxonomy's transfer with the
best single source and with the network trained from scratch on the same small data."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import write_params
from taskonomy.analysis.novel import best_single, novel_table
from taskonomy.config import load_params
from taskonomy.errors import ParamsError


def _losses(rng, n=200):
    scratch = rng.uniform(0.9, 1.1, n)
    return {"self": scratch, "pixels": scratch + 0.05, "a": scratch - 0.3, "b": scratch + rng.normal(0, 0.05, n),
            "a__b": scratch - 0.31}


def _solution(budget, chosen):
    return {"budget": budget, "max_order": 2, "per_target": {"novel": {"sources": chosen}} if chosen else {}}


def test_a_clearly_better_transfer_has_an_interval_below_zero_and_a_tie_one_around_it():
    losses = {"novel": _losses(np.random.default_rng(0))}
    table = novel_table(losses, [_solution(1, ["a"]), _solution(2, ["b"]), _solution(3, None)], rounds=500, seed=0)
    assert best_single(losses["novel"]) == "a"
    clear, tie, unserved = (table.iloc[i] for i in range(3))
    assert clear.chosen == "a" and clear.vs_scratch == pytest.approx(-0.3)
    assert clear.vs_scratch_hi < 0 and clear.vs_best_single == 0 == clear.vs_best_single_lo
    assert tie.vs_scratch_lo < 0 < tie.vs_scratch_hi                 # b is scratch plus noise
    assert tie.vs_best_single_lo > 0                                  # and clearly worse than a
    assert unserved.chosen == "" and np.isnan(unserved.vs_scratch)
    again = novel_table(losses, [_solution(1, ["a"]), _solution(2, ["b"]), _solution(3, None)], rounds=500, seed=0)
    assert again.equals(table)                                        # same seed, same intervals


def test_a_higher_order_choice_is_keyed_by_its_source_set():
    losses = {"novel": _losses(np.random.default_rng(1))}
    row = novel_table(losses, [_solution(1, ["a", "b"])], rounds=200, seed=0).iloc[0]
    assert row.chosen == "a__b" and row.vs_best_single == pytest.approx(-0.01)


@pytest.mark.parametrize("tasks, where, match", [
    ({"rgb2depth": {}, "reshade": {"source_only": True, "target_only": True}}, {}, "source_only and target_only"),
    ({"rgb2depth": {"target_only": True}, "random": {"source_only": True}},
     {"finetune": {"targets": ["rgb2depth"]}, "multitask": {"tasks": ["rgb2depth"]}, "adapt": {"tasks": ["rgb2depth"]}},
     "every trained task is target_only"),
    ({"rgb2depth": {}, "random": {"target_only": True}}, {}, "random.target_only: has no label"),
    ({"rgb2depth": {}, "reshade": {"target_only": True}}, {"multitask": {"tasks": ["rgb2depth", "reshade"]}},
     "multitask.tasks: 'reshade' is target_only"),
])
def test_bad_roles_are_one_line(tmp_path, tasks, where, match):
    path = write_params(tmp_path / "params.yaml", {"tasks": tasks, **where})
    with pytest.raises(ParamsError, match=match):
        load_params(path)


def test_a_novel_task_is_a_target_but_no_source(tmp_path):
    params = load_params(write_params(tmp_path / "params.yaml", {"tasks": {
        "rgb2depth": {}, "reshade": {"target_only": True}, "random": {"source_only": True}}}))
    assert params.targets() == ["rgb2depth", "reshade"]
    assert params.sources() == ["rgb2depth", "random"] and params.target_only() == ["reshade"]
