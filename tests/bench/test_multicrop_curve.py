"""The multi-crop comparison's report: budget shares, paired differences, and what the footnote states."""

from __future__ import annotations

from bench.multicrop_curve import table


def test_table_pairs_the_arms_per_seed_at_each_share_of_the_budget() -> None:
    curves = {
        "two_views": [[0.10, 0.20, 0.25, 0.28, 0.30], [0.12, 0.21, 0.26, 0.27, 0.31]],
        "multicrop": [[0.10, 0.22, 0.26, 0.30, 0.33], [0.12, 0.22, 0.28, 0.29, 0.32]],
    }
    seconds_per_step = {"two_views": 0.1, "multicrop": 0.16}
    cost = {"seconds_per_step": seconds_per_step, "ratio": 1.6, "round_ratios": [1.5, 1.7]}
    run = dict(
        seeds=[0, 1], train_per_class=1, test_per_class=1, epochs=8, small_views=4, batch_size=2,
        backbone="tiny_resnet", rounds=9, steps=4, multicrop_steps=152, two_view_steps=243,
        step_cost=cost,
        seconds={"two_views": 100.0, "multicrop": 101.0}, load_start=[1, 1, 1], load_end=[1, 1, 1],
        machine="x", versions="y", command="z",
    )  # fmt: skip
    text = table(curves, run)
    rows = [line for line in text.splitlines() if line.startswith("| ")][2:]
    assert [row.split("|")[1].strip() for row in rows] == ["0 (random init)", "0.25", "0.5", "0.75", "1"]
    # Last row: differences +3 and +1 points, mean +2.
    assert rows[-1].split("|")[2].strip() == "30.5 [30.0, 31.0]"
    assert rows[-1].split("|")[4].strip().startswith("+2.0 [")
    assert (
        "ratio 1.60 (rounds 1.50-1.70)" in text
        and "multi-crop 152 steps (8 epochs), 2 views 243 steps" in text
    )


def test_a_run_stopped_early_reports_the_seeds_both_arms_finished() -> None:
    curves = {"two_views": [[0.1] * 5, [0.2] * 5], "multicrop": [[0.3] * 5]}
    run = dict(
        seeds=[0, 1, 2], train_per_class=1, test_per_class=1, epochs=1, small_views=4, batch_size=2,
        backbone="b", rounds=1, steps=1, multicrop_steps=1, two_view_steps=2,
        seconds={"two_views": 1.0, "multicrop": 1.0},
        step_cost={"seconds_per_step": {"two_views": 1, "multicrop": 2}, "ratio": 2.0, "round_ratios": [2]},
        load_start=[1, 1, 1], load_end=[1, 1, 1], machine="x", versions="y", command="z",
    )  # fmt: skip
    text = table(curves, run)
    assert "Seeds [0];" in text
    last_row = [line for line in text.splitlines() if line.startswith("| 1 |")][0]
    assert last_row.split("|")[2].strip() == "10.0"  # the first seed's two-view run only
