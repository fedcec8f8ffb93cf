"""The device-path benchmark's smoke mode: its counts come from the views of real JPEG batches, the
kernels per batch do not grow with the batch, and the estimate is the slowest of its bounds."""

from __future__ import annotations

import pytest

from bench.device_views import main


def test_smoke_run_counts_the_views_of_a_batch_and_derives_the_estimate(capsys) -> None:
    batch_size = 12
    (row,) = main(["--smoke", "--batch-size", str(batch_size)])["results"]
    assert row["image_size"] == 32 and row["batch_size"] == batch_size
    assert row["worker_us_per_view"] > 0 and row["host_us_per_op"] > 0 and row["host_reads"] == 0
    assert row["main_us_per_view"] == pytest.approx(
        row["launching_ops"] * row["host_us_per_op"] / (2 * batch_size)
    )
    bounds = row["estimate_views_per_s_per_gpu"]
    assert bounds["slowest"] == min(rate for name, rate in bounds.items() if name != "slowest")
    assert "a labelled estimate, not a measurement" in capsys.readouterr().out
    # The kernels of the views per batch, not per image (tests/views/test_any_size.py pins the count
    # for equal image sizes): 20 ImageNet-like photos at 32 px take 409 with torch 2.14, mostly the
    # filter's taps (up to 2 x 667 / 32 + 1 per side), however many of them are in the batch.
    assert row["launching_ops"] < 450
