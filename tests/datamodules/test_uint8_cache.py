"""The batched view path: images decoded once, served whole batches at a time, views seeded per batch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from datamodules import CIFAR10DataModule, ImageFolderDataModule, STL10DataModule
from datamodules.encoded import EncodedImages
from datamodules.sampling import BatchKey, ResumableBatchSampler, view_seed
from datamodules.training_sets import DeviceViews
from datamodules.uint8_cache import CachedImages
from lightning_modules.simclr import SimCLR
from tests.datamodules.fake_data import WrittenDataset
from views.per_image_dataset import SimCLRTrainingDataset


def test_cifar_pixels_are_cached_once_and_served_as_shuffled_batches_of_views(
    cifar10_root: WrittenDataset,
) -> None:
    datamodule = CIFAR10DataModule(str(cifar10_root.root), batch_size=8, num_workers=0, val_holdout=0)
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert isinstance(cached, CachedImages) and len(cached) == 20  # images, not batches
    assert datamodule.view_path_used == "batched (all 20 training images are 32x32; views made on the CPU)"
    assert cached.images.dtype == torch.uint8 and cached.images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(cached.images.permute(0, 2, 3, 1).numpy(), cifar10_root.train.images)
    np.testing.assert_array_equal(cached.labels.numpy(), cifar10_root.train.labels)

    loader = datamodule.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, ResumableBatchSampler) and len(loader) == 2  # 20 images, batch 8
    first_epoch = list(sampler)
    sampler.set_epoch(1)
    second_epoch = list(sampler)
    assert [key.batch for key in first_epoch] == [0, 1] and {key.epoch for key in second_epoch} == {1}
    assert len(set(torch.cat([key.indices for key in first_epoch]).tolist())) == 16
    assert not torch.equal(first_epoch[0].indices, second_epoch[0].indices)  # reshuffled per epoch
    sampler.set_epoch(0)
    batch = next(iter(loader))  # on a CPU run the loader makes the views
    assert set(batch) == {"view1", "view2", "label"}  # no probe view unless asked for
    assert batch["view1"].shape == (8, 3, 32, 32) and batch["view1"].dtype == torch.float32
    assert torch.equal(batch["label"], torch.as_tensor(cifar10_root.train.labels)[first_epoch[0].indices])


def test_stl10_channel_first_pixels_are_cached_with_unlabeled_marks(stl10_root: WrittenDataset) -> None:
    datamodule = STL10DataModule(
        str(stl10_root.root), batch_size=4, num_workers=0, view_path="batched", val_holdout=0
    )
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    expected = np.concatenate([stl10_root.train.images, stl10_root.unlabeled.images])
    np.testing.assert_array_equal(cached.images.permute(0, 2, 3, 1).numpy(), expected)
    assert cached.labels.tolist() == stl10_root.train.labels.tolist() + [-1] * 10


def test_per_image_path_and_the_deprecated_flag_still_choose(cifar10_root: WrittenDataset) -> None:
    per_image = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=8, num_workers=0, view_path="per_image", val_holdout=0
    )
    per_image.setup("fit")
    assert isinstance(per_image.train_dataset, SimCLRTrainingDataset)
    with pytest.warns(FutureWarning, match=r"gpu_augment is deprecated; use --data\.view_path per_image"):
        alias = CIFAR10DataModule(
            str(cifar10_root.root), batch_size=8, num_workers=0, gpu_augment=False, val_holdout=0
        )
    assert alias.view_path == "per_image"
    with pytest.raises(ValueError, match="contradicts"):
        CIFAR10DataModule(str(cifar10_root.root), batch_size=8, gpu_augment=False, view_path="batched")


def test_ranks_take_disjoint_shares_of_one_permutation() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).contiguous()
    dataset = CachedImages(images, torch.arange(40), run_seed=7)
    seen = [
        torch.cat(
            [
                dataset[key]["label"]
                for key in ResumableBatchSampler(dataset, 2, rank, 7, 4, torch.device("cpu"))
            ]
        )
        for rank in range(2)
    ]
    assert len(seen[0]) == len(seen[1]) == 20
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())
    for shard in seen:
        assert torch.equal(images[shard][:, 0, 0, 0].long(), shard)  # images stay paired with labels


def test_views_made_after_transfer_equal_those_made_in_the_loader(cifar10_root: WrittenDataset) -> None:
    """The accelerator branch (views after the transfer) and the CPU branch (views in the workers)
    draw the same views for the same batch: both depend only on (run seed, rank, epoch, batch)."""
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=8, num_workers=0, probe_view=True, val_holdout=0
    )
    datamodule.setup("fit")
    in_loader = datamodule.train_dataset
    key = BatchKey(epoch=3, batch=1, indices=torch.tensor([5, 2, 7, 0, 19, 11, 4, 8]))
    made_in_loader = in_loader[key]
    raw = CachedImages(in_loader.images, in_loader.labels, in_loader.run_seed)[key]
    assert set(raw) == {"images", "label", "view_seed"} and raw["images"].dtype == torch.uint8
    assert raw["view_seed"] == view_seed(in_loader.run_seed, 0, 3, 1)
    datamodule._device_views = DeviceViews(in_loader.augmenter)
    after_transfer = datamodule.on_after_batch_transfer(raw, 0)
    for name in ("view1", "view2", "probe_view", "label"):
        assert torch.equal(after_transfer[name], made_in_loader[name]), name
    other = in_loader[BatchKey(epoch=3, batch=2, indices=key.indices)]
    assert not torch.equal(other["view1"], made_in_loader["view1"])  # another batch, other parameters
    images, labels = torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    assert datamodule.on_after_batch_transfer((images, labels), 0) == (images, labels)  # evaluation batches


def test_views_do_not_depend_on_the_number_of_workers(cifar10_root: WrittenDataset) -> None:
    batches = {}
    for workers in (0, 2):
        datamodule = CIFAR10DataModule(
            str(cifar10_root.root), batch_size=4, num_workers=workers, probe_view=True, val_holdout=0
        )
        datamodule.setup("fit")
        batches[workers] = list(datamodule.train_dataloader())
    assert len(batches[0]) == len(batches[2]) == 5
    for alone, with_workers in zip(batches[0], batches[2], strict=True):
        for name in ("view1", "view2", "probe_view", "label"):
            assert torch.equal(alone[name], with_workers[name]), name


def write_folder(root: Path, sizes: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for class_name in ("cat", "dog"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for i, (width, height) in enumerate(sizes):
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folders_of_one_size_take_the_batched_path(tmp_path: Path) -> None:
    write_folder(tmp_path, [(20, 16)] * 3)
    datamodule = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=16)
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert datamodule.view_path_used == "batched (all 6 training images are 20x16; views made on the CPU)"
    assert cached.images.shape == (6, 3, 16, 20)
    expected = np.asarray(Image.open(tmp_path / "train" / "dog" / "1.png"))
    np.testing.assert_array_equal(cached.images[4].permute(1, 2, 0).numpy(), expected)
    assert cached.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folders_of_mixed_sizes_take_the_per_image_path_on_cpu_unless_batched_is_asked(
    tmp_path: Path,
) -> None:
    write_folder(tmp_path, [(20, 16), (20, 16), (24, 24)])
    auto = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=16)
    auto.setup("fit")
    assert isinstance(auto.train_dataset, SimCLRTrainingDataset)
    assert auto.view_path_used == "per_image (training images differ in size, e.g. 20x16 and 24x24)"
    forced = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=16, view_path="batched"
    )
    forced.setup("fit")  # the batched path for images of any size (tests/datamodules/test_encoded.py)
    assert isinstance(forced.train_dataset, EncodedImages)
    assert forced.view_path_used is not None
    assert forced.view_path_used.startswith("batched (training images differ in size, e.g. 20x16 and 24x24")


def test_lightning_trains_on_the_batched_views_by_default(
    cifar10_root: WrittenDataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    datamodule = CIFAR10DataModule(str(cifar10_root.root), batch_size=8, num_workers=0, val_holdout=0)
    model = SimCLR(backbone="tiny_resnet", image_size=32, temperature=0.5, batch_size=8, warmup_epochs=0.0)
    received: list[dict[str, torch.Tensor]] = []

    class RecordBatch(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # type: ignore[no-untyped-def]
            received.append(batch)

    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=0,
        callbacks=[RecordBatch()],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    assert isinstance(datamodule.train_dataset, CachedImages)
    assert len(received) == 2
    assert all(
        batch["view1"].dtype == torch.float32 and batch["view1"].shape == (8, 3, 32, 32) for batch in received
    )
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_auto_keeps_the_per_image_path_for_large_downscaling(tmp_path: Path) -> None:
    write_folder(tmp_path, [(40, 40)] * 2)
    auto = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=16)
    auto.setup("fit")
    assert isinstance(auto.train_dataset, SimCLRTrainingDataset)
    assert auto.view_path_used.startswith("per_image (40x40 training images for 16 px views")
    forced = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=16, view_path="batched"
    )
    forced.setup("fit")
    assert isinstance(forced.train_dataset, CachedImages)


def test_auto_makes_views_above_64_px_per_image_on_a_cpu_only_run(tmp_path: Path) -> None:
    """Made on CPU cores, batched views beat per-image PIL views per core only for small images."""
    write_folder(tmp_path, [(96, 96)] * 2)
    large = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=96)
    large.setup("fit")  # no trainer: a CPU run
    assert isinstance(large.train_dataset, SimCLRTrainingDataset)
    assert large.view_path_used.startswith("per_image (96 px views on CPU: above 64 px per-image PIL views")
    small = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=64)
    small.setup("fit")
    assert isinstance(small.train_dataset, CachedImages)  # 64 px views: still batched
    forced = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=96, view_path="batched"
    )
    forced.setup("fit")
    assert isinstance(forced.train_dataset, CachedImages)


def test_auto_keeps_batched_views_of_any_size_on_an_accelerator(tmp_path: Path) -> None:
    """On an accelerator the views are made on the device after the transfer, whatever their size.

    The meta device stands in for a GPU: the cached images move there and the datamodule, not the
    loader, holds the augmenter, as on a GPU run."""
    write_folder(tmp_path, [(96, 96)] * 2)
    datamodule = ImageFolderDataModule(str(tmp_path), batch_size=2, num_workers=0, image_size=96)
    meta = torch.device("meta")
    datamodule.trainer = SimpleNamespace(  # type: ignore[assignment]
        strategy=SimpleNamespace(root_device=meta), global_rank=0, world_size=1
    )
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert isinstance(cached, CachedImages) and cached.augmenter is None
    assert cached.images.device == meta and datamodule._device_views is not None
    assert datamodule.view_path_used == "batched (all 4 training images are 96x96; views made on meta)"
