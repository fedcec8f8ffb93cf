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
