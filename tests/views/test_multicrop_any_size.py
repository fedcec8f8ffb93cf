"""Small views on the batched path for images of any size: each image's small crops drawn from its own
size at the small crop scale, after the large views from the same per-batch generator (which they leave
unchanged), in the batch layout of the other paths, the same in the workers and after the transfer, and
a function of the batch's seed (what a resumed run draws)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from datamodules.sampling import BatchKey
from datamodules.training_sets import DeviceViews
from tests.op_counts import count_aten_ops
from tests.views.photos import write_photo_folder
from tests.views.test_multicrop import (
    MEAN,
    SMALL,
    STD,
    assert_three_small_views_beside_unchanged_large_ones,
    colour_free,
)
from views.any_size import AnySizeViewAugmenter
from views.multicrop import AnySizeMultiCropBatchAugmenter, MultiCrop

SIDES = [64, 200, 96, 150]  # square images of different sizes, a ramp across each
PHOTO_SIZES = [(40, 30), (25, 50), (64, 48), (33, 33), (70, 20), (45, 60)]  # (width, height)


def ramp_image(side: int) -> torch.Tensor:
    """uint8 [3, side, side], 0..255 rising left to right: a view's span of values is its crop's share
    of the image's width, whatever the image's size."""
    row = torch.linspace(0, 255, side).round().to(torch.uint8)
    return row.expand(3, side, side).contiguous()


def test_small_views_come_from_small_crops_of_each_images_own_size_and_leave_the_large_alone() -> None:
    images = [ramp_image(side) for side in SIDES * 6]  # 24 images
    full_sizes = [(side, side) for side in SIDES * 6]
    labels = torch.arange(len(images))
    multi_crop = MultiCrop(count=3, size=SMALL)
    with_small = AnySizeMultiCropBatchAugmenter(colour_free(32), multi_crop, probe_view=True)
    plain = AnySizeViewAugmenter(colour_free(32), probe_view=True)
    batch = with_small.training_batch(images, full_sizes, labels, torch.Generator().manual_seed(5))
    expected = plain.training_batch(images, full_sizes, labels, torch.Generator().manual_seed(5))
    # Boxes drawn from another image's size would span far less (or more) than 0.19-0.43 of the width.
    assert_three_small_views_beside_unchanged_large_ones(batch, expected, 24)


def test_small_views_of_an_image_decoded_smaller_keep_its_full_size_crops() -> None:
    """Over --data.max_decoded_side the pixels are fewer; the small crops are still the same share."""
    full = [ramp_image(200) for _ in range(16)]
    halved = [ramp_image(100) for _ in range(16)]
    augmenter = AnySizeMultiCropBatchAugmenter(colour_free(32), MultiCrop(count=2, size=SMALL))
    sizes, labels = [(200, 200)] * 16, torch.zeros(16, dtype=torch.long)
    from_full = augmenter.training_batch(full, sizes, labels, torch.Generator().manual_seed(1))
    from_halved = augmenter.training_batch(halved, sizes, labels, torch.Generator().manual_seed(1))
    torch.testing.assert_close(from_halved["small_views"], from_full["small_views"], atol=0.1, rtol=0)


def test_kernels_per_batch_grow_with_neither_the_batch_nor_the_small_views_and_nothing_syncs() -> None:
    """All small views of a batch are one filtered pass and one colour pass, whatever N and B."""
    counts = {}
    for images_count, small_count in ((8, 2), (16, 2), (8, 6)):
        sides = [40 + 4 * (n % 5) for n in range(images_count)]
        images, sizes = [ramp_image(side) for side in sides], [(side, side) for side in sides]
        augmenter = AnySizeMultiCropBatchAugmenter(colour_free(32), MultiCrop(small_count, SMALL))
        labels = torch.zeros(images_count, dtype=torch.long)
        ops = count_aten_ops(
            lambda: augmenter.training_batch(images, sizes, labels, torch.Generator().manual_seed(0))  # noqa: B023
        )
        assert ops.host_syncs() == 0
        counts[images_count, small_count] = ops.launching()
    assert counts[8, 2] == counts[16, 2] == counts[8, 6], counts


def test_the_augmenter_travels_to_workers_with_its_small_views() -> None:
    augmenter = AnySizeMultiCropBatchAugmenter(colour_free(32), MultiCrop(count=2, size=SMALL), True)
    copy = AnySizeMultiCropBatchAugmenter.__new__(AnySizeMultiCropBatchAugmenter)
    copy.__setstate__(augmenter.__getstate__())
    assert (copy.multi_crop, copy.probe_view, copy.small_config) == (
        augmenter.multi_crop, True, augmenter.small_config,
    )  # fmt: skip


def test_a_folder_of_varied_sizes_gets_small_views_in_the_workers_and_after_the_transfer(
    tmp_path: Path,
) -> None:
    root = write_photo_folder(tmp_path, PHOTO_SIZES)
    datamodule = ImageFolderDataModule(
        str(root), batch_size=4, num_workers=0, image_size=32, view_path="batched", num_small_views=3,
        mean=MEAN, std=STD,
    )  # fmt: skip
    datamodule.setup("fit")
    in_workers = datamodule.train_dataset
    assert isinstance(in_workers, EncodedImages)
    assert isinstance(in_workers.augmenter, AnySizeMultiCropBatchAugmenter)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["small_views"].shape == (3, 4, 3, 16, 16) and batch["view1"].shape == (4, 3, 32, 32)

    key = BatchKey(epoch=2, batch=1, indices=torch.tensor([5, 0, 10, 4]))
    made_in_worker, again = in_workers[key], in_workers[key]
    assert torch.equal(made_in_worker["small_views"], again["small_views"])  # a resume draws the same
    other = in_workers[BatchKey(epoch=2, batch=2, indices=key.indices)]
    assert not torch.equal(other["small_views"], made_in_worker["small_views"])
    # The accelerator's route, run on the CPU: bytes transferred, decoded and made into views after.
    raw = EncodedImages(in_workers.files, in_workers.labels.numpy(), in_workers.run_seed)[key]
    datamodule._device_views = DeviceViews(in_workers.augmenter)
    cpu = torch.device("cpu")
    after = datamodule.on_after_batch_transfer(datamodule.transfer_batch_to_device(raw, cpu, 0), 0)
    for name in ("view1", "view2", "small_views", "label"):
        assert torch.equal(after[name], made_in_worker[name]), name
    assert np.isfinite(after["small_views"].numpy()).all()
