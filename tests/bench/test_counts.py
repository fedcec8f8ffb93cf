"""The launch count of the batched views comes through the datamodule and does not grow with the batch."""

from __future__ import annotations

from bench.counts import batched_views_counts


def test_batched_views_are_counted_through_the_datamodule_and_do_not_scale_with_the_batch() -> None:
    small = batched_views_counts(batch_size=8, compile_augment=False)
    large = batched_views_counts(batch_size=24, compile_augment=False)
    # Both views (and the probe view, where the probe takes one) come out of on_after_batch_transfer.
    assert {"view1", "view2"} <= set(small["shapes"])
    for name, shape in small["shapes"].items():
        if len(shape) == 4:
            assert shape == [8, 3, 32, 32] and large["shapes"][name] == [24, 3, 32, 32], name
    # One batched op per step, never one per image: the count is the same for 8 and 24 images.
    assert sum(small["ops"].values()) > 0
    assert small["ops"] == large["ops"]
