"""On the batched path for images of any size too (files read per batch, decoded where the views are
made), a run resumed mid-epoch trains exactly the batches, images and views the uninterrupted run
trained (the other paths' tests: test_resume_trajectory.py, test_resume_trajectory_batched.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from tests.reliability.resume import BATCH, IMAGES, SIDE, STEPS_PER_EPOCH, uninterrupted_and_resumed
from tests.views.photos import write_photo_folder

RECORDED = ("view1", "view2", "probe_view", "label")


def capture(trainer, outputs, batch) -> dict:
    return {
        **{name: batch[name].clone() for name in RECORDED},
        "loss": outputs["loss"].item(),
        "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
    }


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

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, EncodedImages) for datamodule in datamodules)
    for step, after_resume in resumed.items():
        expected = uninterrupted[step]
        for name in RECORDED:
            assert torch.equal(after_resume[name], expected[name]), f"{name} differs at step {step}"
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    first, second = uninterrupted[1]["view1"], uninterrupted[STEPS_PER_EPOCH + 1]["view1"]
    assert not torch.equal(first, second)
