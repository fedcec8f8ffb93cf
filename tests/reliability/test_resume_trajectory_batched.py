"""On the batched view path too, a run resumed mid-epoch trains exactly the batches, images and views,
that the uninterrupted run trained (the per-image path's test is test_resume_trajectory.py)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from datamodules.uint8_cache import CachedImages
from tests.datamodules.in_memory import InMemoryDataModule
from tests.reliability.resume import (
    BATCH,
    IMAGES,
    SIDE,
    assert_same_views_and_losses,
    capture_views_and_losses,
    uninterrupted_and_resumed,
)


class RandomImagesDataModule(InMemoryDataModule):
    """The real base datamodule on the default (batched) path; the images are random uint8 tensors."""

    def _pretrain_images(self) -> Dataset:
        images = torch.randint(0, 256, (IMAGES, 3, SIDE, SIDE), generator=torch.Generator().manual_seed(0))
        return list(zip(images.to(torch.uint8), (torch.arange(IMAGES) % 2).tolist(), strict=True))


def test_resumed_batched_run_trains_the_same_images_and_views(tmp_path: Path) -> None:
    datamodules: list[RandomImagesDataModule] = []

    def make_datamodule() -> RandomImagesDataModule:
        datamodule = RandomImagesDataModule(root="unused", batch_size=BATCH, num_workers=0, probe_view=True)
        datamodules.append(datamodule)
        return datamodule

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture_views_and_losses, make_datamodule)
    assert all(isinstance(datamodule.train_dataset, CachedImages) for datamodule in datamodules)
    assert_same_views_and_losses(uninterrupted, resumed)
