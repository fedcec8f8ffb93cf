"""StreamingDataModule on the batched path for images of any size: the workers hand each streamed batch's
JPEG bytes to the machinery an image folder's files go through (datamodules/encoded.py, views/jpeg.py),
so a batch of the same images with the same seed gives the same views; seeds are independent across
ranks and epochs, a resumed loader serves the rest of its epoch, and train.py fits on shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli import cli_main
from datamodules import ImageFolderDataModule, StreamingDataModule
from datamodules.encoded import EncodedImages, encoded_batch
from datamodules.shard_reading import EncodedShardBatch, ShardEncodedImages, ShardLoader, set_distributed_env
from tests.run_helpers import fresh_cli_environment
from tests.shard_helpers import shards_of
from tests.views.photos import write_photo_folder
from views.jpeg import read_image

BATCH, SIDE = 4, 16
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
VIEW_KEYS = ("view1", "view2", "probe_view")
STREAMED_PER_BATCH = (
    "JPEG bytes streamed from the shards per batch, decoded and views made in the DataLoader workers"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """12 JPEGs per class in varied sizes: no one-size cache, so the batched path reads them per batch."""
    sizes = [(20 + 3 * (n % 5), 30 - 2 * (n % 4)) for n in range(12)]
    return write_photo_folder(tmp_path / "images", sizes)


@pytest.fixture
def shards(folder: Path, tmp_path: Path) -> Path:
    return shards_of(folder, tmp_path / "shards")  # unchanged JPEGs keep their bytes


def batched(datamodule_class: type, root: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    datamodule = datamodule_class(
        str(root), batch_size=BATCH, num_workers=0, image_size=SIDE, view_path="batched", probe_view=True,
        pin_memory=False, **kwargs,
    )  # fmt: skip
    datamodule.setup("fit")
    return datamodule


def encoded_form(dataset: ShardEncodedImages) -> ShardEncodedImages:
    """The same stream, batched as an accelerator receives it (bytes, names, seed), not yet views."""
    dataset.collate = EncodedShardBatch(dataset.collate.run_seed, None)  # type: ignore[attr-defined]
    return dataset


def test_streamed_batches_are_the_image_folders_batches_of_the_same_images_and_seed(
    folder: Path, shards: Path
) -> None:
    streamed = batched(StreamingDataModule, shards)
    assert isinstance(streamed.train_dataset, ShardEncodedImages)
    assert STREAMED_PER_BATCH in str(streamed.view_path_used)
    views = list(streamed.train_dataloader())
    encoded = list(ShardLoader(encoded_form(streamed.train_dataset), lambda: 0, batch_size=BATCH))
    from_files = batched(ImageFolderDataModule, folder).train_dataset
    assert isinstance(from_files, EncodedImages)
    assert len(views) == len(encoded) == 24 // BATCH
    for streamed_views, streamed_bytes in zip(views, encoded, strict=True):
        files = [str(folder / "train" / name.split("/shards/train/")[1]) for name in streamed_bytes["name"]]
        indices = [from_files.files.index(file) for file in files]
        read = [read_image(file, from_files.max_decoded_side) for file in files]
        labels = from_files.labels[indices]
        # The shard holds the file's own bytes, read and sized as the file is.
        assert all(torch.equal(a, b.data) for a, b in zip(streamed_bytes["encoded"], read, strict=True))
        assert streamed_bytes["full_size"].tolist() == [[image.height, image.width] for image in read]
        assert torch.equal(streamed_bytes["label"], labels)
        expected = encoded_batch(read, files, labels, streamed_bytes["view_seed"], from_files.augmenter)
        for key in (*VIEW_KEYS, "label"):
            assert torch.equal(streamed_views[key], expected[key]), key  # type: ignore[call-overload]


def epoch_seeds(shards: Path, world_size: int, rank: int, epoch: int) -> list[tuple[int, list[int]]]:
    dataset = encoded_form(batched(StreamingDataModule, shards).train_dataset)  # type: ignore[arg-type]
    set_distributed_env(dataset, world_size, rank, 1)
    loader = ShardLoader(dataset, lambda: epoch, batch_size=BATCH // world_size, num_workers=2)
    return [(batch["view_seed"], batch["name"]) for batch in loader]


def test_views_are_seeded_apart_on_every_rank_and_epoch(shards: Path) -> None:
    batches = [batch for rank in (0, 1) for epoch in (0, 1) for batch in epoch_seeds(shards, 2, rank, epoch)]
    seeds = [seed for seed, _ in batches]
    assert len(batches) == 2 * 2 * 24 // BATCH and len(set(seeds)) == len(seeds)
    for epoch in (0, 1):
        ranks = [epoch_seeds(shards, 2, rank, epoch) for rank in (0, 1)]
        images = [name for batches_of_rank in ranks for _, names in batches_of_rank for name in names]
        assert len(images) == len(set(images)) == 24  # each image on one rank once per epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_loader_serves_the_rest_of_its_epochs_views(shards: Path, workers: int) -> None:
    def batches(done: int) -> list[dict]:
        loader = ShardLoader(
            batched(StreamingDataModule, shards).train_dataset,  # type: ignore[arg-type]
            lambda: 1, batch_size=BATCH, num_workers=workers,
        )  # fmt: skip
        loader.resume_at(1, done)
        return list(loader)

    whole = batches(0)
    for done in (1, 4):
        rest = batches(done)
        assert len(rest) == len(whole) - done
        for resumed, expected in zip(rest, whole[done:], strict=True):
            assert all(torch.equal(resumed[key], expected[key]) for key in (*VIEW_KEYS, "label"))


def test_train_py_fits_on_shards_with_batched_views(
    shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lightning_logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch, wandb_mode="offline")
    fit = cli_main([
        "fit", "--config", str(CONFIGS / "imagefolder.yaml"), "--config", str(CONFIGS / "cpu-smoke.yaml"),
        "--data", "StreamingDataModule", "--data.root", str(shards), "--data.image_size", "16",
        "--data.batch_size", "8", "--data.view_path", "batched", "--data.num_workers", "2",
        "--trainer.logger", "false",
    ])  # fmt: skip
    assert STREAMED_PER_BATCH in lightning_logs.text
    assert isinstance(fit.datamodule.train_dataset, ShardEncodedImages)
    assert fit.trainer.global_step == 24 // 8  # every training image once (val/ validates)
    metrics = fit.trainer.callback_metrics
    assert {"val/probe_top1", "test/probe_top1"} <= metrics.keys()
