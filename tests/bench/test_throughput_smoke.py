"""CI runs the benchmark's smoke mode end to end: it must finish and report sane, consistent numbers.

No timing is asserted (CPU speed varies); the checks are that every pipeline was measured, the
figures are positive and finite, the ratios are the figures over the baseline, and the report names
the machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_smoke_mode_reports_every_pipeline_with_consistent_ratios(tmp_path: Path) -> None:
    report = tmp_path / "throughput.json"
    completed = subprocess.run(
        [sys.executable, "bench/throughput.py", "--smoke", "--json", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| config | measure | pipeline | views/s | x peers | note |" in completed.stdout

    payload = json.loads(report.read_text())
    machine = payload["machine"]
    assert machine["torch"] and machine["date_utc"].endswith("UTC") and machine["cpu"]
    assert payload["command"].startswith("python bench/throughput.py --smoke")
    results = {(r["measure"], r["pipeline"]): r for r in payload["results"]}
    for measure in ("augment", "train_step"):
        baseline = results[(measure, "peers")]["views_per_s"]
        for pipeline in ("gpu", "cpu_loader", "peers"):
            row = results[(measure, pipeline)]
            assert row["config"] == "smoke-tiny-16"
            assert math.isfinite(row["views_per_s"]) and row["views_per_s"] > 0, row
            assert math.isclose(row["ratio_vs_peers"], row["views_per_s"] / baseline, rel_tol=1e-9)
            assert (
                f"| smoke-tiny-16 | {measure} | {pipeline} | {row['views_per_s']:,.0f} |" in completed.stdout
            )
        kornia = results[(measure, "kornia")]
        assert (kornia["views_per_s"] is None) == kornia["note"].startswith("skipped")
