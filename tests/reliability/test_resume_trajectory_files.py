"""On the batched path for images of any size too (files read per batch, decoded where the views are
made), a run resumed mid-epoch trains exactly the batches, images and views the uninterrupted run
trained (the other paths' tests: test_resume_trajectory.py, test_resume_trajectory_batched.py)."""

from __future__ import annotations

from pathlib import Path

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


def test_resumed_run_on_files_of_any_size_trains_the_same_images_and_views(tmp_path: Path) -> None:
    sizes = [(20 + 3 * (n % 5), 30 - 2 * (n % 4)) for n in range(IMAGES // 2)]  # 12 per class, varied
    root = write_photo_folder(tmp_path / "images", sizes, png_every=4)
    datamodules: list[ImageFolderDataModule] = []

    def make_datamodule() -> ImageFolderDataModule:
        datamodule = ImageFolderDataModule(
            str(root), batch_size=BATCH, num_workers=0, image_size=SIDE, view_path="batched", probe_view=True
        )
        datamodules.append(datamodule)
        return datamodule

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture_views_and_losses, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, EncodedImages) for datamodule in datamodules)
    assert_same_views_and_losses(uninterrupted, resumed)
