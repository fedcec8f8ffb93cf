"""On the batched path for images of any size too (files read per batch, decoded where the views are
made), a run resumed mid-epoch trains exactly the batches, images and views the uninterrupted run
trained, small views (multi-crop) included (the other paths' tests: test_resume_trajectory.py,
test_resume_trajectory_batched.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from tests.reliability.resume import (
    BATCH,
    IMAGES,
    SIDE,
    assert_same_views_and_losses,
    capture_views_and_losses,
    uninterrupted_and_resumed,
)
from tests.views.photos import write_photo_folder


@pytest.mark.parametrize("small_views", [0, 2])
def test_resumed_run_on_files_of_any_size_trains_the_same_images_and_views(
    tmp_path: Path, small_views: int
) -> None:
    sizes = [(20 + 3 * (n % 5), 30 - 2 * (n % 4)) for n in range(IMAGES // 2)]  # 12 per class, varied
    root = write_photo_folder(tmp_path / "images", sizes, png_every=4)
    datamodules: list[ImageFolderDataModule] = []

    def make_datamodule() -> ImageFolderDataModule:
        datamodule = ImageFolderDataModule(
            str(root), batch_size=BATCH, num_workers=0, image_size=SIDE, view_path="batched", probe_view=True,
            num_small_views=small_views,
        )  # fmt: skip
        datamodules.append(datamodule)
        return datamodule

    def capture(trainer: pl.Trainer, outputs: dict, batch: dict) -> dict:
        small = {"small_views": batch["small_views"].clone()} if small_views else {}
        return {**capture_views_and_losses(trainer, outputs, batch), **small}

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, EncodedImages) for datamodule in datamodules)
    assert_same_views_and_losses(uninterrupted, resumed)
    for step, after_resume in resumed.items():
        if small_views:
            assert after_resume["small_views"].shape == (small_views, BATCH, 3, 8, 8)  # SIDE 16 -> 8
            assert torch.equal(after_resume["small_views"], uninterrupted[step]["small_views"]), step
