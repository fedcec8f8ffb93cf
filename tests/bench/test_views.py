"""The views benchmark's smoke mode end to end: the JSON it writes has the promised shape and sane figures.

No wall time is asserted (CPU speed varies): the checks are the schema, that every listed pipeline was
measured or said why not, that each figure is positive and the median of its rounds, and that x_peers is
the figure over peers_pil's.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTED = {"default", "per_image", "peers_pil", "lightly", "kornia"}
ALWAYS_RUN = {"default", "per_image", "peers_pil"}


def test_smoke_run_writes_every_pipeline_with_consistent_figures(tmp_path: Path) -> None:
    report = tmp_path / "views.json"
    completed = subprocess.run(
        [sys.executable, "bench/views.py", "--smoke", "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]

    payload = json.loads(report.read_text())
    machine = payload["machine"]
    assert machine["cpu"] and machine["date_utc"].endswith("UTC") and machine["torch_threads"] == 1
    assert len(machine["load_average_start"]) == 3 and len(machine["load_average_end"]) == 3
    for library in ("torch", "torchvision", "pytorch_lightning"):
        assert machine["versions"][library], library
    assert machine["command"].startswith("python bench/views.py --smoke")

    rows = payload["results"]
    for config in ("cifar10", "stl10"):
        measured = {row["pipeline"]: row for row in rows if row["config"] == config}
        assert set(measured) | set(payload["skipped"]) == LISTED
        assert ALWAYS_RUN <= set(measured)
        baseline = measured["peers_pil"]["views_per_s"]
        for pipeline, row in measured.items():
            assert row["measure"] == "views_per_core" and row["clock"] == "cpu"
            assert row["wall_views_per_s"] > 0
            assert math.isfinite(row["views_per_s"]) and row["views_per_s"] > 0, row
            assert row["rounds"] == len(row["rates"]) == 3
            assert row["median"] == row["views_per_s"] == statistics.median(row["rates"])
            assert row["min"] <= row["median"] <= row["max"]
            assert math.isclose(row["x_peers"], row["views_per_s"] / baseline, rel_tol=1e-12), pipeline
            assert f"{row['median']:,.0f} ({row['min']:,.0f}-{row['max']:,.0f})" in completed.stdout


def test_smoke_run_of_the_photo_folder_config_reports_every_pipeline(tmp_path: Path) -> None:
    report = tmp_path / "views.json"
    completed = subprocess.run(
        [sys.executable, "bench/views.py", "--smoke", "--config", "imagefolder", "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(report.read_text())
    assert "ImageNet-like JPEGs" in payload["machine"]["photos"] and "images" not in payload["machine"]
    measured = {row["pipeline"]: row for row in payload["results"]}
    assert all(row["config"] == "imagefolder" for row in payload["results"])
    not_measured = payload["not_measured"]["imagefolder"]
    # Every listed pipeline is measured or said why not; batched is the path from files (views/any_size.py).
    assert set(measured) | set(not_measured) | set(payload["skipped"]) == {
        "default", "per_image", "batched", "peers_pil", "lightly"
    }  # fmt: skip
    assert {"default", "per_image", "batched", "peers_pil"} <= set(measured)
    assert all(row["views_per_s"] > 0 and row["rounds"] == 3 for row in measured.values())
    assert "| imagefolder (224 px), median (min-max) | x peers |" in completed.stdout
