"""The GPU benchmark's smoke mode runs on CPU: every pipeline gets both measures, ratios are consistent."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_smoke_run_measures_every_pipeline_augment_and_train_step(tmp_path: Path) -> None:
    report = tmp_path / "train_step.json"
    completed = subprocess.run(
        [sys.executable, "bench/train_step.py", "--smoke", "--pipelines", "default,per_image,peers_pil",
         "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(report.read_text())
    assert payload["machine"]["device"] == "cpu" and payload["machine"]["precision"] == "fp32"
    rows = {(row["measure"], row["pipeline"]): row for row in payload["results"]}
    pipelines = ("default", "per_image", "peers_pil")
    assert set(rows) == {(measure, p) for measure in ("augment", "train_step") for p in pipelines}
    for (measure, _), row in rows.items():
        assert math.isfinite(row["views_per_s"]) and row["views_per_s"] > 0, row
        baseline = rows[(measure, "peers_pil")]["views_per_s"]
        assert math.isclose(row["x_peers"], row["views_per_s"] / baseline, rel_tol=1e-12)


def test_smoke_run_of_the_photo_folder_config_trains_on_every_path(tmp_path: Path) -> None:
    """The GPU command's config (ImageNet-like JPEGs of varied sizes at 224 px), wired end to end on CPU,
    where `batched` forces the path from files that `default` takes on a GPU."""
    report = tmp_path / "train_step.json"
    completed = subprocess.run(
        [sys.executable, "bench/train_step.py", "--smoke", "--configs", "imagefolder",
         "--pipelines", "batched,peers_pil,kornia", "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {(row["measure"], row["pipeline"]) for row in json.loads(report.read_text())["results"]}
    # kornia keeps images of one size in memory: not run on a folder of files.
    assert rows == {(measure, p) for measure in ("augment", "train_step") for p in ("batched", "peers_pil")}
