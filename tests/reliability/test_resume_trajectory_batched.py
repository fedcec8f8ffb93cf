"""On the batched view path too, a run resumed mid-epoch trains exactly the batches, images and views,
that the uninterrupted run trained (the per-image path's test is test_resume_trajectory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from datamodules.uint8_cache import CachedImages
from tests.datamodules.in_memory import InMemoryDataModule
from tests.reliability.resume import BATCH, IMAGES, SIDE, STEPS_PER_EPOCH, uninterrupted_and_resumed

RECORDED = ("view1", "view2", "probe_view", "label")


class RandomImagesDataModule(InMemoryDataModule):
    """The real base datamodule on the default (batched) path; the images are random uint8 tensors."""

    def _pretrain_images(self) -> Dataset:
        images = torch.randint(0, 256, (IMAGES, 3, SIDE, SIDE), generator=torch.Generator().manual_seed(0))
        return list(zip(images.to(torch.uint8), (torch.arange(IMAGES) % 2).tolist(), strict=True))


def capture(trainer, outputs, batch) -> dict:
    return {
        **{name: batch[name].clone() for name in RECORDED},
        "loss": outputs["loss"].item(),
        "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
    }


def test_resumed_batched_run_trains_the_same_images_and_views(tmp_path: Path) -> None:
    datamodules: list[RandomImagesDataModule] = []

    def make_datamodule() -> RandomImagesDataModule:
        datamodule = RandomImagesDataModule(root="unused", batch_size=BATCH, num_workers=0, probe_view=True)
        datamodules.append(datamodule)
        return datamodule

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, CachedImages) for datamodule in datamodules)
    for step, after_resume in resumed.items():
        expected = uninterrupted[step]
        for name in RECORDED:
            assert torch.equal(after_resume[name], expected[name]), f"{name} differs at step {step}"
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    # Every step of the run drew its own views: the two epochs are not replays of each other.
    first, second = uninterrupted[1]["view1"], uninterrupted[STEPS_PER_EPOCH + 1]["view1"]
    assert not torch.equal(first, second)
