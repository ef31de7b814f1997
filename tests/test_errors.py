"""Entry points: one line and exit 2 for user errors; ``--timing`` written only on success."""
from __future__ import annotations

import json
import time

import pytest

from taskonomy.errors import DataError, process_seconds, run_stage


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
