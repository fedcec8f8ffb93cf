"""StreamingDataModule on local shards: what ImageFolderDataModule gives for the folder the shards came from,
each training image once per epoch on every rank, node and worker, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from datamodules import ImageFolderDataModule, StreamingDataModule
from datamodules.holdout import UNLABELED
from datamodules.shard_info import INFO_FILENAME
from datamodules.shard_reading import ShardLoader, ShardTrainingViews, set_distributed_env
from datamodules.uint8_cache import CachedImages
from reliability.errors import UserError
from tests.shard_helpers import IndexedTrainingViews, shards_of, write_jpeg_folder
from views.decode import load_rgb

BATCH = 4


def indexed(datamodule: StreamingDataModule) -> StreamingDataModule:
    """Its training dataset (once set up) also reports each item's image index."""
    assert isinstance(datamodule.train_dataset, ShardTrainingViews)
    datamodule.train_dataset.__class__ = IndexedTrainingViews
    return datamodule


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_jpeg_folder(tmp_path / "images", ("cat", "dog", "eel"), {"train": 8, "val": 2})


@pytest.fixture
def shards(folder: Path, tmp_path: Path) -> Path:
    return shards_of(folder, tmp_path / "shards")


def make(root: Path, **kwargs: object) -> StreamingDataModule:
    return StreamingDataModule(str(root), batch_size=BATCH, num_workers=0, pin_memory=False, **kwargs)  # type: ignore[arg-type]


def test_properties_and_images_are_those_of_the_image_folder(folder: Path, shards: Path) -> None:
    datamodule, reference = make(shards), ImageFolderDataModule(str(folder), batch_size=BATCH, num_workers=0)
    for name in ("class_names", "num_classes", "image_size", "native_image_size", "mean", "std"):
        assert getattr(datamodule, name) == getattr(reference, name), name
    assert datamodule.has_validation_split() and datamodule.held_out_indices() is None
    assert datamodule.resolved_arguments() == reference.resolved_arguments()
    # Every training image, with its label, decodes to the pixels of its source file.
    images = datamodule.train_images()
    stored = StreamingDataset(str(shards / "train"))
    paths = [stored[index]["path"] for index in range(len(images))]
    assert sorted(paths) == sorted(
        str(path.relative_to(folder / "train")) for path in folder.rglob("train/*/*")
    )
    for index, path in enumerate(paths):
        image, label = images[index]
        assert label == datamodule.class_names.index(path.split("/")[0])
        assert np.array_equal(np.asarray(image), np.asarray(load_rgb(str(folder / "train" / path))))
    # Validation: the same evaluation tensors and labels, as multisets (the orders differ).
    for module in (datamodule, reference):
        module.setup("validate")
    ours, theirs = ([(int(label), image.numpy().tobytes()) for image, label in module.val_dataset]
                    for module in (datamodule, reference))  # fmt: skip
    assert sorted(ours) == sorted(theirs)


def test_without_val_a_held_out_slice_validates_and_trains_unlabelled(tmp_path: Path) -> None:
    folder = write_jpeg_folder(tmp_path / "images", ("cat", "dog"), {"train": 10, "test": 2})
    datamodule = make(shards_of(folder, tmp_path / "shards"), view_path="per_image", val_holdout=4)
    assert not datamodule.has_validation_split()
    held_out = datamodule.held_out_indices()
    assert held_out is not None and len(held_out) == 4
    datamodule.setup("fit")
    assert len(datamodule.val_dataset) == 4
    batches = list(indexed(datamodule).train_dataloader())
    labels = {
        int(i): int(label)
        for batch in batches
        for i, label in zip(batch["index"], batch["label"], strict=True)
    }
    assert len(labels) == 20
    assert sorted(index for index, label in labels.items() if label == UNLABELED) == held_out.tolist()
    datamodule.setup("test")
    assert len(datamodule.test_dataset) == 4


def test_training_batches_are_the_view_contract_drawn_from_seed_epoch_and_image(shards: Path) -> None:
    datamodule = make(shards, view_path="per_image", probe_view=True)
    datamodule.setup("fit")
    first, again = (list(indexed(datamodule).train_dataloader()) for _ in range(2))
    assert len(first) == 24 // BATCH
    for batch in first:
        assert set(batch) == {"view1", "view2", "probe_view", "label", "index"}
        assert batch["view1"].shape == batch["probe_view"].shape == (BATCH, 3, 16, 16)
        assert batch["view1"].dtype == torch.float32 and not torch.equal(batch["view1"], batch["view2"])
    for one, two in zip(first, again, strict=True):  # the same epoch again: same order, same views
        assert all(torch.equal(one[key], two[key]) for key in one)


def training_views(shards: Path) -> ShardTrainingViews:
    datamodule = make(shards, view_path="per_image")
    datamodule.setup("fit")
    return indexed(datamodule).train_dataset  # type: ignore[return-value]


def iterate_epoch(dataset: ShardTrainingViews, epoch: int, workers: int, batch: int = BATCH) -> list[int]:
    loader = ShardLoader(dataset, lambda: epoch, batch_size=batch, num_workers=workers, collate_fn=None)
    return [int(index) for batch in loader for index in batch["index"]]


@pytest.mark.parametrize(("world_size", "num_nodes", "batch"), [(2, 1, 4), (4, 2, 2), (4, 2, 4)])
def test_every_image_at_most_once_per_epoch_over_ranks_nodes_and_workers(
    shards: Path, world_size: int, num_nodes: int, batch: int
) -> None:
    # Every rank trains the same number of whole batches, so only what does not fill one batch on every
    # rank is left out: nothing of 24 images when world_size x batch divides 24, else 8 with 4 x 4.
    expected = 24 // (world_size * batch) * world_size * batch
    for epoch in (
        0,
        1,
        2,
    ):  # LitData keeps later epochs' chunks on the node that read them: epoch > 0 differs
        per_rank = []
        for rank in range(world_size):
            dataset = training_views(shards)
            set_distributed_env(dataset, world_size, rank, num_nodes)
            per_rank.append(iterate_epoch(dataset, epoch, workers=2, batch=batch))
        assert {len(indices) for indices in per_rank} == {expected // world_size}, f"epoch {epoch}"
        seen = [index for indices in per_rank for index in indices]
        assert len(set(seen)) == len(seen) == expected, f"epoch {epoch}"
    assert iterate_epoch(dataset, 0, 2, batch) != iterate_epoch(dataset, 1, 2, batch)


@pytest.mark.parametrize("workers", [0, 3])
def test_a_loader_resumed_after_any_batch_serves_the_rest_of_that_epoch(shards: Path, workers: int) -> None:
    def batches(loader: ShardLoader) -> list[list[int]]:
        return [batch["index"].tolist() for batch in loader]

    whole = batches(ShardLoader(training_views(shards), lambda: 1, batch_size=BATCH, num_workers=workers))
    assert len(whole) == 24 // BATCH
    for done in range(1, len(whole)):
        loader = ShardLoader(training_views(shards), lambda: 1, batch_size=BATCH, num_workers=workers)
        loader.resume_at(1, done)
        assert batches(loader) == whole[done:], f"resumed after {done} batches"


def test_the_batched_path_decodes_the_shards_into_one_tensor(shards: Path, folder: Path) -> None:
    datamodule = make(shards, view_path="batched")
    datamodule.setup("fit")
    cached = datamodule.train_dataset
    assert isinstance(cached, CachedImages) and cached.images.shape == (24, 3, 16, 16)
    images = datamodule.train_images()
    for index in range(24):
        assert torch.equal(
            cached.images[index], torch.from_numpy(np.array(images[index][0])).permute(2, 0, 1)
        )
    assert cached.labels.tolist() == images.targets.tolist()


def test_missing_or_unfinished_shards_and_mixed_sizes_are_explained(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist; make one with `python shards.py"):
        make(tmp_path / "nowhere")
    (shards / INFO_FILENAME).rename(tmp_path / "saved.json")
    with pytest.raises(
        FileNotFoundError, match=r"has no dataset.json, so it is not a finished shard dataset"
    ):
        make(shards)
    (shards / INFO_FILENAME).write_text("{not json")
    with pytest.raises(ValueError, match=r"is not a shards.py dataset description"):
        make(shards)
    info = json.loads((tmp_path / "saved.json").read_text())
    info["splits"]["train"]["sizes"].append([20, 16, "dog/01.jpg"])
    (shards / INFO_FILENAME).write_text(json.dumps(info))
    with pytest.raises(
        UserError, match=r"Images of different sizes .*'train/dog/01.jpg' is 20x16.*--data.image_size"
    ):
        make(shards)
    assert make(shards, image_size=16).native_image_size is None


def test_evaluation_protocols_read_the_shards_with_their_own_transforms(shards: Path) -> None:
    from evaluation.data import LabelledTrainSplit, evaluation_split

    datamodule = make(shards)
    split = LabelledTrainSplit(datamodule, include_held_out=True)
    assert len(split.labels) == 24 and sorted(set(split.labels.tolist())) == [0, 1, 2]
    image, label = split.dataset([0], augment=True)[0]
    assert image.shape == (3, 16, 16) and label == split.labels[0]
    with pytest.warns(UserWarning, match="has no test split, so test/\\* reports on val/"):
        assert len(evaluation_split(datamodule)) == 6


@pytest.mark.parametrize("where", ["storage_options", "environment"])
def test_a_plain_http_s3_endpoint_is_refused_before_the_run(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = "http://127.0.0.1:9"  # nothing is contacted: the refusal comes first
    options = {"storage_options": {"endpoint_url": endpoint}} if where == "storage_options" else {}
    if where == "environment":
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(UserError, match=r"S3 endpoint 'http://127.0.0.1:9' is plain http.*https"):
        StreamingDataModule("s3://bucket/shards", batch_size=4, **options)  # type: ignore[arg-type]
