"""Small views on both view paths: their size and crop scale, the large views left as they were, the
batch layout, and the datamodule's flags."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import CIFAR10DataModule, ImageFolderDataModule
from datamodules.sampling import BatchKey
from tests.datamodules.fake_data import WrittenDataset, write_cifar10
from tests.run_helpers import write_image_folder
from views.batched import BatchViewAugmenter
from views.config import AugmentConfig
from views.crop_decode import ImageFile
from views.decode import load_rgb
from views.multicrop import MultiCrop, MultiCropBatchAugmenter, default_small_view_size
from views.per_image import PilProbeView, PilSimCLRView
from views.per_image_dataset import SimCLRTrainingDataset

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
SIDE, SMALL = 64, 16


def colour_free(image_size: int) -> AugmentConfig:
    """Crops and flips only: a view's pixels are then a resized window of the image."""
    config = AugmentConfig.simclr(image_size, MEAN, STD, blur=False)
    return replace(config, jitter_p=0.0, grayscale_p=0.0)


def ramp() -> np.ndarray:
    """[SIDE, SIDE] values 0..255 rising left to right: a view's span of values is its crop's width."""
    return np.tile(np.linspace(0, 255, SIDE), (SIDE, 1))


def spans(views: torch.Tensor) -> np.ndarray:
    """max - min of each view's first channel, in 0..255 units, from normalised views [..., 3, S, S]."""
    pixels = views[..., 0, :, :].flatten(-2) * STD[0] + MEAN[0]
    return ((pixels.amax(-1) - pixels.amin(-1)) * 255).flatten().numpy()


# A crop of area fraction a and aspect ratio r in [3/4, 4/3] is sqrt(a r) of the side wide: 0.05-0.14 of
# the area spans 0.19-0.43 of the ramp, the large views' 0.08-1 spans 0.24-1.
SMALL_SPAN = (np.sqrt(0.05 * 3 / 4) * 255 - 8, np.sqrt(0.14 * 4 / 3) * 255 + 8)


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    return write_cifar10(tmp_path, monkeypatch)


def test_default_small_size_follows_swav_to_a_multiple_of_8() -> None:
    assert [default_small_view_size(side) for side in (224, 160, 96, 32, 16)] == [96, 72, 40, 16, 8]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((-1, None, (0.05, 0.14)), "--data.num_small_views -1 must be >= 0"),
        ((2, 0, (0.05, 0.14)), "--data.small_view_size 0 must be a positive"),
        ((2, None, (0.2, 0.1)), r"--data.small_crop_scale \[0.2, 0.1\] must be \[low, high\]"),
        ((2, 40, (0.05, 0.14)), "--data.small_view_size 40 is larger than the 32 px large views"),
    ],
)
def test_bad_settings_name_the_flag(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiCrop.of(*arguments, image_size=32)
    assert MultiCrop.of(0, None, (0.05, 0.14), 32) is None


def test_batched_small_views_come_from_small_crops_and_leave_the_large_views_alone() -> None:
    images = torch.from_numpy(ramp()).round().to(torch.uint8).expand(48, 3, SIDE, SIDE).contiguous()
    labels = torch.arange(48)
    multi_crop = MultiCrop(count=3, size=SMALL)
    with_small = MultiCropBatchAugmenter(colour_free(32), multi_crop, probe_view=True)
    plain = BatchViewAugmenter(colour_free(32), probe_view=True)
    batch = with_small.training_batch(images, labels, torch.Generator().manual_seed(5))
    expected = plain.training_batch(images, labels, torch.Generator().manual_seed(5))
    assert_three_small_views_beside_unchanged_large_ones(batch, expected, 48)


def assert_three_small_views_beside_unchanged_large_ones(batch: dict, expected: dict, images: int) -> None:
    """A batched path's batch with 3 small views of the ramp against the same batch without them."""
    for name in ("view1", "view2", "probe_view", "label"):
        assert torch.equal(batch[name], expected[name]), name
    small = batch["small_views"]
    assert small.shape == (3, images, 3, SMALL, SMALL) and small.dtype == torch.float32
    small_spans, large_spans = spans(small), spans(torch.stack([batch["view1"], batch["view2"]]))
    assert SMALL_SPAN[0] <= small_spans.min() and small_spans.max() <= SMALL_SPAN[1], small_spans
    assert large_spans.max() > SMALL_SPAN[1]  # the premise: large crops reach beyond small ones
    assert not torch.equal(small[0], small[1]) and not torch.equal(small[1], small[2])  # own draws


def test_per_image_small_views_come_from_small_crops_in_the_batch_layout() -> None:
    image = Image.fromarray(np.repeat(ramp()[:, :, None], 3, axis=2).round().astype(np.uint8))
    images = [(image, index) for index in range(24)]
    large = PilSimCLRView(colour_free(32))
    small_view = PilSimCLRView(MultiCrop(count=4, size=SMALL).small_view_config(large.config))
    dataset = SimCLRTrainingDataset(images, large, small_views=(small_view, 4))
    plain = SimCLRTrainingDataset(images, large)
    torch.manual_seed(3)  # seeds the per-process generator
    batch = dataset.collate([dataset[index] for index in range(24)])
    torch.manual_seed(3)
    expected = plain.collate([plain[index] for index in range(1)])
    assert torch.equal(batch["view1"][:1], expected["view1"]) and torch.equal(
        batch["view2"][:1], expected["view2"]
    )
    small = batch["small_views"]
    assert small.shape == (4, 24, 3, SMALL, SMALL) and small.dtype == torch.float32
    assert small_view.config.crop_scale == (0.05, 0.14) and small_view.config.jitter_p == 0.0
    small_spans = spans(small)
    assert SMALL_SPAN[0] <= small_spans.min() and small_spans.max() <= SMALL_SPAN[1], small_spans


def test_the_collate_normalises_small_views_like_the_large_ones() -> None:
    dataset = SimCLRTrainingDataset([], PilSimCLRView(colour_free(32)))
    pixels = torch.randint(0, 256, (2, 3, SMALL, SMALL, 3), dtype=torch.uint8)  # [B, N, s, s, 3]
    blank = torch.zeros(32, 32, 3, dtype=torch.uint8)
    items = [{"view1": blank, "view2": blank, "small_views": pixels[b], "label": b} for b in range(2)]
    small = dataset.collate(items)["small_views"]
    expected = (pixels.permute(1, 0, 4, 2, 3).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(small, expected)


@pytest.mark.parametrize("view_path", ["batched", "per_image"])
def test_the_datamodule_flags_make_small_views_on_both_paths(
    cifar10_root: WrittenDataset, view_path: str
) -> None:
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=4, num_workers=0, val_holdout=0, view_path=view_path,
        num_small_views=2, small_crop_scale=(0.1, 0.2),
    )  # fmt: skip
    assert datamodule.multi_crop == MultiCrop(count=2, size=16, crop_scale=(0.1, 0.2))
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["small_views"].shape == (2, 4, 3, 16, 16)
    assert batch["view1"].shape == (4, 3, 32, 32)


def test_an_image_folder_read_file_by_file_makes_small_views(tmp_path) -> None:
    root = write_image_folder(tmp_path / "images", ("a", "b"), 4, image_side=48)
    datamodule = ImageFolderDataModule(
        str(root), batch_size=4, num_workers=0, image_size=32, view_path="per_image", num_small_views=3
    )
    datamodule.setup("fit")
    assert datamodule.train_dataset.files is not None  # the per-image path reads the files itself
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["small_views"].shape == (3, 4, 3, 16, 16)


def test_batched_small_views_are_a_function_of_the_batch_seed(cifar10_root: WrittenDataset) -> None:
    """A resumed run, or another worker, draws the same small views for the same (epoch, batch)."""
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=4, num_workers=0, val_holdout=0, num_small_views=2
    )
    datamodule.setup("fit")
    key = BatchKey(epoch=2, batch=1, indices=torch.tensor([3, 1, 4, 7]))
    first, again = datamodule.train_dataset[key], datamodule.train_dataset[key]
    assert torch.equal(first["small_views"], again["small_views"])
    other = datamodule.train_dataset[BatchKey(epoch=2, batch=2, indices=key.indices)]
    assert not torch.equal(first["small_views"], other["small_views"])


def test_reading_files_gives_the_small_views_the_loader_path_gives(tmp_path) -> None:
    """Files (views/crop_decode.py) and loaded images draw large, small, then probe views alike."""
    rng = np.random.default_rng(0)
    paths, labels = [], [0, 1, 0, 1]
    for index in range(4):
        side = 40 + 6 * index  # small enough that no crop allows a reduced decode
        pixels = rng.integers(0, 256, (side, side + 4, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{index}.jpg", quality=90)
        paths.append(str(tmp_path / f"{index}.jpg"))
    loaded = [(load_rgb(path), label) for path, label in zip(paths, labels, strict=True)]
    large = PilSimCLRView(AugmentConfig.simclr(32, MEAN, STD))
    small = (PilSimCLRView(MultiCrop(count=3, size=SMALL).small_view_config(large.config)), 3)
    probe = PilProbeView(32)
    by_loader = SimCLRTrainingDataset(loaded, large, probe, small_views=small)
    by_file = SimCLRTrainingDataset(loaded, large, probe, files=paths, labels=labels, small_views=small)
    batches = []
    for dataset in (by_loader, by_file):
        torch.manual_seed(5)
        batches.append(dataset.collate([dataset[i] for i in range(4)]))
    assert batches[0]["small_views"].shape == (3, 4, 3, SMALL, SMALL)
    for key in ("view1", "view2", "small_views", "probe_view", "label"):
        torch.testing.assert_close(batches[1][key], batches[0][key], atol=0, rtol=0)


def test_a_file_is_decoded_no_smaller_than_its_small_crops_allow(tmp_path, monkeypatch) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)).save(
        tmp_path / "big.jpg", quality=80
    )
    path = str(tmp_path / "big.jpg")
    large = PilSimCLRView(AugmentConfig.simclr(32, MEAN, STD))
    small_view = PilSimCLRView(MultiCrop(count=3, size=64).small_view_config(large.config))
    dataset = SimCLRTrainingDataset([], large, files=[path], labels=[0], small_views=(small_view, 3))
    reductions: list[int] = []
    decode = ImageFile.decode
    monkeypatch.setattr(
        ImageFile, "decode", lambda self, reduction=1: reductions.append(reduction) or decode(self, reduction)
    )
    item = dataset._views_of_file(path, np.random.default_rng(1))
    assert item["small_views"].shape == (3, 64, 64, 3)

    source, rng = ImageFile.open(path), np.random.default_rng(1)  # the same draws again
    large_boxes = [large.draw(rng, *source.size).box for _ in range(2)]
    small_boxes = [small_view.draw(rng, *source.size).box for _ in range(3)]
    assert source.reduction_for(large_boxes, 32) > source.reduction_for(small_boxes, 64)  # the premise
    assert reductions == [source.reduction_for(small_boxes, 64)]
