"""The GPU path of the datamodules: images decoded once, served as uint8 batches, augmented after transfer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from datamodules import CIFAR10DataModule, ImageFolderDataModule, STL10DataModule
from datamodules.uint8_cache import CachedImageBatches
from lightning_modules.simclr import SimCLR
from tests.datamodules.fake_data import WrittenDataset


def test_cifar_pixels_are_cached_once_and_served_in_shuffled_batches(cifar10_root: WrittenDataset) -> None:
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=8, num_workers=0, gpu_augment=True, val_holdout=0
    )
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert isinstance(cached, CachedImageBatches)
    assert cached.images.dtype == torch.uint8 and cached.images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(cached.images.permute(0, 2, 3, 1).numpy(), cifar10_root.train.images)
    np.testing.assert_array_equal(cached.labels.numpy(), cifar10_root.train.labels)

    loader = datamodule.train_dataloader()
    first_epoch, second_epoch = list(loader), list(loader)
    assert len(loader) == len(first_epoch) == 2  # 20 images, batch 8, the partial batch dropped
    for batch in first_epoch:
        assert batch["images"].shape == (8, 3, 32, 32) and batch["images"].dtype == torch.uint8
        for image, label in zip(batch["images"], batch["label"], strict=True):
            index = next(i for i in range(20) if torch.equal(cached.images[i], image))
            assert label == cifar10_root.train.labels[index]
    assert not torch.equal(first_epoch[0]["images"], second_epoch[0]["images"])  # reshuffled per epoch


def test_stl10_channel_first_pixels_are_cached_with_unlabeled_marks(stl10_root: WrittenDataset) -> None:
    datamodule = STL10DataModule(
        str(stl10_root.root), batch_size=4, num_workers=0, gpu_augment=True, val_holdout=0
    )
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    expected = np.concatenate([stl10_root.train.images, stl10_root.unlabeled.images])
    np.testing.assert_array_equal(cached.images.permute(0, 2, 3, 1).numpy(), expected)
    assert cached.labels.tolist() == stl10_root.train.labels.tolist() + [-1] * 10


def test_ranks_take_disjoint_shares_of_one_permutation() -> None:
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).contiguous()
    labels = torch.arange(40)
    seen = [
        torch.cat(
            [batch["label"] for batch in CachedImageBatches(images, labels, 4, seed=7, rank=r, world_size=2)]
        )
        for r in range(2)
    ]
    assert len(seen[0]) == len(seen[1]) == 20
    assert set(seen[0].tolist()).isdisjoint(seen[1].tolist())
    for shard in seen:
        assert torch.equal(images[shard][:, 0, 0, 0].long(), shard)  # images stay paired with labels


def test_after_transfer_the_batch_follows_the_training_contract(cifar10_root: WrittenDataset) -> None:
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=8, num_workers=0, gpu_augment=True, val_holdout=0
    )
    datamodule.setup("fit")
    raw = next(iter(datamodule.train_dataloader()))
    batch = datamodule.on_after_batch_transfer(raw, 0)
    assert set(batch) == {"view1", "view2", "probe_view", "label"}
    for name in ("view1", "view2", "probe_view"):
        assert batch[name].shape == (8, 3, 32, 32) and batch[name].dtype == torch.float32
    assert torch.equal(batch["label"], raw["label"])
    images, labels = torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)
    assert datamodule.on_after_batch_transfer((images, labels), 0) == (images, labels)  # evaluation batches


def write_folder(root: Path, sizes: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for class_name in ("cat", "dog"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for i, (width, height) in enumerate(sizes):
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folders_of_one_size_are_decoded_into_the_cache(tmp_path: Path) -> None:
    write_folder(tmp_path, [(20, 16)] * 3)
    datamodule = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=16, gpu_augment=True
    )
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert cached.images.shape == (6, 3, 16, 20)
    expected = np.asarray(Image.open(tmp_path / "train" / "dog" / "1.png"))
    np.testing.assert_array_equal(cached.images[4].permute(1, 2, 0).numpy(), expected)
    assert cached.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folders_of_mixed_sizes_are_refused_with_the_way_out(tmp_path: Path) -> None:
    write_folder(tmp_path, [(20, 16), (24, 24)])
    datamodule = ImageFolderDataModule(
        str(tmp_path), batch_size=2, num_workers=0, image_size=16, gpu_augment=True
    )
    with pytest.raises(ValueError, match=r"one size.*--data\.gpu_augment false") as raised:
        datamodule.setup("fit")
    assert str(tmp_path) in str(raised.value)


def test_lightning_trains_on_the_views_made_after_transfer(
    cifar10_root: WrittenDataset, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=8, num_workers=0, gpu_augment=True, val_holdout=0
    )
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
    assert len(received) == 2
    assert all(
        batch["view1"].dtype == torch.float32 and batch["view1"].shape == (8, 3, 32, 32) for batch in received
    )
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
