"""The learning-curve report: the paired difference and its interval, and the table's verdicts."""

from __future__ import annotations

import math

import pytest

from bench.learning_curve import paired_difference, table


def test_paired_difference_is_the_mean_of_per_seed_differences_with_a_student_t_interval() -> None:
    ours, reference = [0.30, 0.32, 0.31], [0.29, 0.30, 0.31]
    mean, low, high = paired_difference(ours, reference)
    # Differences 1, 2, 0 points: mean 1, sample sd 1, t(0.975, df=2) = 4.3027 -> half-width 4.3027 / sqrt(3).
    assert mean == pytest.approx(1.0)
    assert high - mean == pytest.approx(mean - low)
    assert high - mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)


def test_a_single_seed_has_no_interval() -> None:
    mean, low, high = paired_difference([0.5], [0.25])
    assert mean == pytest.approx(25.0) and math.isnan(low) and math.isnan(high)


def test_table_flags_an_epoch_whose_mean_leaves_the_reference_range() -> None:
    curves = {
        "ours": [[0.10, 0.20, 0.40], [0.10, 0.22, 0.40]],
        "reference": [[0.10, 0.30, 0.39], [0.10, 0.31, 0.41]],
    }
    run = dict(
        seeds=[0, 1], train_per_class=1, test_per_class=1, backbone="tiny_resnet", image_size=32,
        batch_size=2, epochs=2, warmup_epochs=1.0, threads=1, workers=0, view_path="auto",
        seconds={"ours": 1.0, "reference": 1.0}, load="0 / 0 / 0", machine="x", versions="y", command="z",
    )  # fmt: skip
    rows = [line for line in table(curves, run).splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[4].strip() for row in rows] == ["yes", "no", "yes"]
    assert rows[1].split("|")[5].strip().startswith("-9.5 [")
