"""The micro-batch benchmark in smoke mode: every configuration is timed, and its peak RSS measured alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.micro_batches import main

pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # main() sets one thread; the fixture restores


def test_smoke_run_times_and_measures_every_micro_batch_size(tmp_path: Path) -> None:
    report = tmp_path / "micro_batches.json"
    main(["--smoke", "--json", str(report)])
    payload = json.loads(report.read_text())
    assert payload["machine"]["torch_threads"] == 1 and payload["machine"]["batch_size"] == 16
    rows = {row["micro_batch_size"]: row for row in payload["results"]}
    assert set(rows) == {4, 16}
    assert rows[16]["x_time"] == 1.0 and rows[16]["x_memory"] == 1.0  # the one-pass baseline
    for row in rows.values():
        assert row["cpu_s_per_step"] > 0 and row["wall_s_per_step"] > 0
        # Each measured in a process of its own, above what the imports and the model take.
        assert 0 < row["step_rss_mb"] < row["peak_rss_mb"]
        assert math.isclose(row["x_memory"], row["peak_rss_mb"] / rows[16]["peak_rss_mb"])
