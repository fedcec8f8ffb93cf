from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.base import EvalSplit, SimCLRDataModule
from views.config import Triple
from views.transforms import ImageTransform


class InMemoryPairs(Dataset):
    """Deterministic 24x24 images whose label is index % 3."""

    def __init__(self, count: int, transform: ImageTransform | None = None) -> None:
        self.count = count
        self.transform = transform

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[object, int]:
        pixels = np.random.default_rng(index).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        return (self.transform(image) if self.transform else image), index % 3


class InMemoryDataModule(SimCLRDataModule):
    native_image_size = 24

    def __init__(self, batch_size: int, train_count: int = 10, num_workers: int = 0, **kwargs: Any) -> None:
        super().__init__("in-memory", batch_size, num_workers, pin_memory=False, **kwargs)
        self.train_count = train_count
        self.built_eval_splits: list[EvalSplit] = []

    @property
    def class_names(self) -> list[str]:
        return ["a", "b", "c"]

    @property
    def mean(self) -> Triple:
        return (0.5, 0.5, 0.5)

    @property
    def std(self) -> Triple:
        return (0.25, 0.25, 0.25)

    def _pretrain_images(self) -> Dataset:
        return InMemoryPairs(self.train_count)

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        self.built_eval_splits.append(split)
        return InMemoryPairs(7, transform)


def attach_world_size(datamodule: SimCLRDataModule, world_size: int) -> None:
    datamodule.trainer = SimpleNamespace(  # type: ignore[assignment]
        world_size=world_size, global_rank=0, strategy=SimpleNamespace(root_device=torch.device("cpu"))
    )


def test_properties_and_hyperparameters_are_ready_after_init() -> None:
    datamodule = InMemoryDataModule(batch_size=4, jitter_strength=0.5)
    assert datamodule.num_classes == 3
    assert datamodule.image_size == 24  # None -> native size
    assert datamodule.hparams.batch_size == 4 and datamodule.hparams.jitter_strength == 0.5
    assert InMemoryDataModule(batch_size=4, image_size=16).image_size == 16


@pytest.mark.parametrize(("world_size", "per_device"), [(1, 8), (2, 4), (4, 2)])
def test_global_batch_is_split_across_devices(world_size: int, per_device: int) -> None:
    for view_path in ("per_image", "batched"):
        datamodule = InMemoryDataModule(batch_size=8, train_count=16, view_path=view_path)
        attach_world_size(datamodule, world_size)
        assert datamodule.per_device_batch_size == per_device
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        batch_size = loader.batch_size if view_path == "per_image" else loader.sampler.batch_size
        assert batch_size == per_device, view_path
        assert len(loader) == 16 // world_size // per_device, view_path


def test_indivisible_global_batch_names_both_numbers_and_a_fix() -> None:
    datamodule = InMemoryDataModule(batch_size=10)
    attach_world_size(datamodule, 4)
    with pytest.raises(ValueError, match=r"batch_size=10.*world size 4.*batch_size=8 or 12"):
        _ = datamodule.per_device_batch_size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 1}, "at least 2"),
        ({"batch_size": 4, "min_crop_scale": 0.0}, "min_crop_scale=0.0"),
        ({"batch_size": 4, "image_size": 0}, "image_size=0"),
        ({"batch_size": 4, "jitter_strength": -1.0}, "jitter_strength=-1.0"),
    ],
)
def test_invalid_arguments_are_rejected_with_the_argument_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InMemoryDataModule(**kwargs)


@pytest.mark.parametrize("probe_view", [False, True])
@pytest.mark.parametrize("view_path", ["per_image", "batched"])
def test_train_loader_yields_full_contract_batches_and_drops_the_last_partial_one(
    view_path: str, probe_view: bool
) -> None:
    """The probe view is part of the contract only when asked for: nothing else reads it."""
    torch.manual_seed(0)
    datamodule = InMemoryDataModule(batch_size=4, train_count=10, view_path=view_path, probe_view=probe_view)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert not loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 2  # 10 images, batch 4: the last 2 are dropped
    seen_labels = []
    for batch in batches:
        views = ("view1", "view2", "probe_view") if probe_view else ("view1", "view2")
        assert set(batch) == {*views, "label"}
        assert all(batch[view].shape == (4, 3, 24, 24) for view in views)
        assert batch["label"].dtype == torch.int64
        assert not torch.equal(batch["view1"], batch["view2"])
        seen_labels += batch["label"].tolist()
    assert set(seen_labels) <= {0, 1, 2} and len(seen_labels) == 8


def test_eval_loaders_keep_every_sample_in_order() -> None:
    datamodule = InMemoryDataModule(batch_size=4, val_holdout=0)  # 0: validate on the "val" split
    datamodule.setup("validate")
    datamodule.setup("test")
    assert datamodule.built_eval_splits == ["val", "test"] and datamodule.train_dataset is None
    images, labels = next(iter(datamodule.val_dataloader()))
    assert images.shape == (4, 3, 24, 24) and labels.tolist() == [0, 1, 2, 0]
    assert sum(len(labels) for _, labels in datamodule.test_dataloader()) == 7


def test_persistent_workers_follow_num_workers() -> None:
    datamodule = InMemoryDataModule(batch_size=4, num_workers=2)
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    assert loader.num_workers == 2 and loader.persistent_workers


def test_training_set_smaller_than_the_batch_is_an_error_not_an_empty_epoch() -> None:
    datamodule = InMemoryDataModule(batch_size=16, train_count=10)
    with pytest.raises(ValueError, match=r"10 images, fewer than batch_size=16"):
        datamodule.setup("fit")


def test_loader_before_setup_says_which_setup_is_missing() -> None:
    with pytest.raises(RuntimeError, match=r"setup\('fit'\)"):
        InMemoryDataModule(batch_size=4).train_dataloader()


def test_transforms_follow_the_hyperparameters() -> None:
    settings = dict(batch_size=4, jitter_strength=0.5, min_crop_scale=0.3, blur=True)
    datamodule = InMemoryDataModule(**settings, view_path="per_image")
    datamodule.setup("fit")
    config = datamodule.train_dataset.view.config
    assert config.crop_scale == (0.3, 1.0) and config.blur
    assert config.jitter_ranges[0] == pytest.approx((0.6, 1.4))
    batched = InMemoryDataModule(**settings)  # the default path for images of one size
    batched.setup("fit")
    config = batched.train_dataset.augmenter.config
    assert config.crop_scale == (0.3, 1.0) and config.blur
    assert config.jitter_ranges[0] == pytest.approx((0.6, 1.4))


def test_a_step_zero_checkpoint_of_older_code_resumes_at_the_first_batch() -> None:
    """Checkpoints saved in the start-up sanity check recorded epoch -1 until resume_position existed."""
    datamodule = InMemoryDataModule(batch_size=4, train_count=12, view_path="per_image")
    datamodule.setup("fit")
    datamodule.load_state_dict({"epoch": -1, "batches_done": 0})
    sampler = datamodule.train_dataloader().sampler
    assert sampler.epoch == 0 and len(list(sampler)) == 12
