"""The benchmarks feed our datamodule's batches through its transfer hooks, as Lightning does."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.pipelines import datamodule_batches
from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from datamodules.training_sets import DeviceViews
from tests.views.photos import write_photo_folder


def test_batches_of_files_are_decoded_and_made_into_views_through_the_transfer_hooks(tmp_path: Path) -> None:
    """A GPU run's layout (the workers only read files; views made after the transfer), on the CPU."""
    root = write_photo_folder(tmp_path, [(40, 30), (25, 50), (64, 48), (33, 33)])
    datamodule = ImageFolderDataModule(
        str(root), batch_size=4, num_workers=0, image_size=16, view_path="batched"
    )
    datamodule.setup("fit")
    in_workers = datamodule.train_dataset
    assert isinstance(in_workers, EncodedImages) and in_workers.augmenter is not None
    datamodule.train_dataset = EncodedImages(in_workers.files, in_workers.labels.numpy(), in_workers.run_seed)
    datamodule._device_views = DeviceViews(in_workers.augmenter)
    batch = next(datamodule_batches(datamodule, torch.device("cpu")))
    assert set(batch) == {"view1", "view2", "label"} and batch["view1"].shape == (4, 3, 16, 16)
