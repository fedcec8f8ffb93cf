"""Image folders of any size on the batched path: files read per batch, decoded where the views are made."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from datamodules.holdout import UNLABELED, dataset_labels
from datamodules.sampling import BatchKey
from datamodules.training_sets import DeviceViews
from tests.views.photos import write_photo_folder

SIZES = [(40, 30), (25, 50), (64, 48), (33, 33), (70, 20), (45, 60)]  # (width, height)


def folder_datamodule(root: Path, **arguments) -> ImageFolderDataModule:  # noqa: ANN003
    settings = {"batch_size": 4, "num_workers": 0, "image_size": 16, "view_path": "batched", **arguments}
    return ImageFolderDataModule(str(root), **settings)


def test_a_folder_of_varied_sizes_trains_on_batched_views_read_from_its_files(tmp_path: Path) -> None:
    root = write_photo_folder(tmp_path, SIZES, png_every=3)  # JPEGs and a few PNGs
    datamodule = folder_datamodule(root, probe_view=True)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    assert isinstance(dataset, EncodedImages) and dataset.augmenter is not None  # views made in the workers
    assert datamodule.view_path_used == (
        "batched (training images differ in size, e.g. 40x30 and 25x50; files read per batch, decoded and "
        "views made in the DataLoader workers (antialiased crops))"
    )
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 3  # 12 images, batches of 4
    labels = []
    for batch in batches:
        assert set(batch) == {"view1", "view2", "probe_view", "label"}
        for name in ("view1", "view2", "probe_view"):
            assert batch[name].shape == (4, 3, 16, 16) and batch[name].dtype == torch.float32
        labels += batch["label"].tolist()
    assert sorted(labels) == [0] * 6 + [1] * 6  # every image once per epoch


def test_views_made_after_the_transfer_equal_those_made_in_the_workers(tmp_path: Path) -> None:
    """The accelerator's route (bytes to the device, decoded there, views after the transfer), run on
    the CPU here, makes exactly the views the workers make on a CPU-only run."""
    root = write_photo_folder(tmp_path, SIZES, png_every=3)
    datamodule = folder_datamodule(root)
    datamodule.setup("fit")
    in_workers = datamodule.train_dataset
    assert isinstance(in_workers, EncodedImages) and in_workers.augmenter is not None
    key = BatchKey(epoch=2, batch=1, indices=torch.tensor([5, 0, 10, 4]))
    made_in_worker = in_workers[key]
    raw = EncodedImages(in_workers.files, in_workers.labels.numpy(), in_workers.run_seed)[key]
    assert sum(item.ndim == 1 for item in raw["encoded"]) == 3  # the JPEGs travel as bytes, PNGs decoded
    datamodule._device_views = DeviceViews(in_workers.augmenter)
    cpu = torch.device("cpu")
    transferred = datamodule.transfer_batch_to_device(raw, cpu, 0)
    after_transfer = datamodule.on_after_batch_transfer(transferred, 0)
    for name in ("view1", "view2", "label"):
        assert torch.equal(after_transfer[name], made_in_worker[name]), name
    other = in_workers[BatchKey(epoch=2, batch=2, indices=key.indices)]
    assert not torch.equal(other["view1"], made_in_worker["view1"])  # another batch, other parameters
    # Evaluation batches pass through as Lightning moves them.
    images, labels = torch.zeros(2, 3, 16, 16), torch.tensor([0, 1])
    moved = datamodule.on_after_batch_transfer(
        datamodule.transfer_batch_to_device((images, labels), cpu, 0), 0
    )
    assert torch.equal(moved[0], images) and torch.equal(moved[1], labels)


def test_auto_takes_this_path_on_an_accelerator_for_folders_the_cache_cannot_hold(tmp_path: Path) -> None:
    """The meta device stands in for a GPU: the workers only read files; the datamodule finishes the
    views after the transfer. On the CPU, auto keeps the per-image path for varied sizes."""
    root = write_photo_folder(tmp_path, SIZES)
    on_gpu = folder_datamodule(root, view_path="auto")
    on_gpu.trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(root_device=torch.device("meta")), global_rank=0, world_size=1
    )
    on_gpu.setup("fit")
    dataset = on_gpu.train_dataset
    assert isinstance(dataset, EncodedImages) and dataset.augmenter is None
    assert on_gpu._device_views is not None
    assert on_gpu.view_path_used is not None and on_gpu.view_path_used.endswith(
        "files read per batch, JPEGs decoded and views made on meta (antialiased crops))"
    )
    large = write_photo_folder(tmp_path / "large", [(40, 40)] * 4)  # one size, over twice the 16 px views
    fixed = folder_datamodule(large, view_path="auto")
    fixed.trainer = on_gpu.trainer
    fixed.setup("fit")
    assert isinstance(fixed.train_dataset, EncodedImages)
    assert fixed.view_path_used is not None and fixed.view_path_used.startswith(
        "batched (40x40 training images for 16 px views; files read per batch"
    )
    on_cpu = folder_datamodule(root, view_path="auto")
    on_cpu.setup("fit")
    assert on_cpu.view_path_used == "per_image (training images differ in size, e.g. 40x30 and 25x50)"


def test_held_out_images_keep_serving_pretraining_without_their_labels(tmp_path: Path) -> None:
    root = write_photo_folder(tmp_path, SIZES)
    (root / "val").rename(root / "test")
    datamodule = folder_datamodule(root, val_holdout=4)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    assert isinstance(dataset, EncodedImages) and len(dataset) == 12
    held_out = datamodule.held_out_indices()
    assert held_out is not None and len(held_out) == 4
    assert (dataset.labels.numpy()[held_out] == UNLABELED).all()
    np.testing.assert_array_equal(dataset.labels.numpy(), dataset_labels(datamodule.train_images()))


def test_the_decoded_size_limit_is_checked_against_the_view_size(tmp_path: Path) -> None:
    root = write_photo_folder(tmp_path, SIZES)
    with pytest.raises(ValueError, match="max_decoded_side=8 is smaller than the views"):
        folder_datamodule(root, max_decoded_side=8)
    datamodule = folder_datamodule(root, max_decoded_side=32)
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    assert isinstance(dataset, EncodedImages) and dataset.max_decoded_side == 32
    batch = EncodedImages(dataset.files, dataset.labels.numpy(), 0, max_decoded_side=32)[
        BatchKey(0, 0, torch.tensor([2, 4]))
    ]
    # 64x48 and 70x20 are over 32 px: decoded in the worker, reduced to fit; their full sizes are kept.
    assert [tuple(item.shape) for item in batch["encoded"]] == [(3, 24, 32), (3, 9, 32)]
    assert batch["full_size"].tolist() == [[48, 64], [20, 70]]
