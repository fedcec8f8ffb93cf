"""Streamed from shards too, a run resumed mid-epoch trains exactly the images and views the uninterrupted
run trained (the same test as test_resume_trajectory.py, _batched.py and _files.py), with DataLoader
workers, on the per-image path and on the batched path for images of any size."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from datamodules import StreamingDataModule
from datamodules.shard_reading import ShardEncodedImages
from tests.reliability.resume import (
    BATCH,
    IMAGES,
    SIDE,
    STEPS_PER_EPOCH,
    assert_same_views_and_losses,
    capture_views_and_losses,
    uninterrupted_and_resumed,
)
from tests.shard_helpers import IndexedStreamingDataModule, shards_of, write_jpeg_folder
from tests.views.photos import write_photo_folder

RECORDED = ("index", "view1", "view2", "label")
capture = partial(capture_views_and_losses, recorded=RECORDED)


@pytest.mark.slow
def test_resumed_streaming_run_trains_the_same_images_and_views(tmp_path: Path) -> None:
    classes = ("cat", "dog", "eel")
    folder = write_jpeg_folder(tmp_path / "images", classes, {"train": IMAGES // 3, "val": 1}, side=SIDE)
    shards = shards_of(folder, tmp_path / "shards")

    def make_datamodule() -> IndexedStreamingDataModule:
        return IndexedStreamingDataModule(
            str(shards), batch_size=BATCH, num_workers=2, view_path="per_image", pin_memory=False
        )

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture, make_datamodule)
    assert_same_views_and_losses(uninterrupted, resumed, RECORDED)
    # Each epoch trains every image once, in a new order.
    steps = [range(first, first + STEPS_PER_EPOCH) for first in (1, STEPS_PER_EPOCH + 1)]
    epochs = [[i for step in epoch for i in uninterrupted[step]["index"].tolist()] for epoch in steps]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(IMAGES)) and epochs[0] != epochs[1]


@pytest.mark.slow
def test_resumed_streaming_run_on_batched_views_of_any_size_trains_the_same_views(tmp_path: Path) -> None:
    sizes = [(20 + 3 * (n % 5), 30 - 2 * (n % 4)) for n in range(IMAGES // 2)]  # 12 per class, varied
    shards = shards_of(write_photo_folder(tmp_path / "images", sizes), tmp_path / "shards")
    datamodules: list[StreamingDataModule] = []

    def make_datamodule() -> StreamingDataModule:
        datamodule = StreamingDataModule(
            str(shards), batch_size=BATCH, num_workers=2, image_size=SIDE, view_path="batched",
            probe_view=True, pin_memory=False,
        )  # fmt: skip
        datamodules.append(datamodule)
        return datamodule

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture_views_and_losses, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, ShardEncodedImages) for datamodule in datamodules)
    assert_same_views_and_losses(uninterrupted, resumed)
