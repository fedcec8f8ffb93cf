"""The shards benchmark's smoke mode end to end: every row is measured, positive, the median of its
rounds, and each ratio is over its baseline's figure. No wall time is asserted."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES = {
    "convert": {"decode once", "convert, default", "convert, max_side 256"},
    "open": {"image folder", "shards"},
    "read": {"image folder, by index", "shards, streamed", "shards, by index"},
}


def test_smoke_run_writes_every_row_with_consistent_figures(tmp_path: Path) -> None:
    report = tmp_path / "shards.json"
    completed = subprocess.run(
        [sys.executable, "bench/shards.py", "--smoke", "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(report.read_text())
    assert payload["machine"]["torch_threads"] == 1 and len(payload["machine"]["load_average_end"]) == 3
    assert "ImageNet-like JPEGs" in payload["images"]
    rows = payload["results"]
    for measure, names in PIPELINES.items():
        assert {row["pipeline"] for row in rows if row["measure"] == measure} == names, measure
    figure = {"convert": "core_s_per_10k_images", "open": "cpu_s", "read": "images_per_core_s"}
    for row in rows:
        assert all(value >= 0 for value in row["rounds"]) and row[figure[row["measure"]]] >= 0
    read = {row["pipeline"]: row for row in rows if row["measure"] == "read"}
    baseline = read["image folder, by index"]["images_per_core_s"]
    for row in read.values():
        assert row["images_per_core_s"] == 256 / statistics.median(row["rounds"])
        assert row["x_folder"] == row["images_per_core_s"] / baseline
    convert = {row["pipeline"]: row for row in rows if row["measure"] == "convert"}
    assert convert["decode once"]["x_decode_once"] == 1.0
