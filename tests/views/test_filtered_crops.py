"""Crops of images of different sizes equal torchvision's antialiased crop-then-resize, in a fixed number
of kernels per batch."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

import views.filtered_crops as filtered_crops_module
from tests.op_counts import count_aten_ops
from views.filtered_crops import filtered_crops, image_geometry, pack_images
from views.resample import resample


def packed(images: list[torch.Tensor]):  # noqa: ANN201
    return pack_images(images, torch.tensor(image_geometry(images)))


def random_images(sizes: list[tuple[int, int]], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator) for h, w in sizes]


def torchvision_crop(image: torch.Tensor, box: list[int], size: int, flip: bool) -> torch.Tensor:
    crop = TF.resized_crop(image.float() / 255, *box, [size, size], antialias=True)
    return TF.horizontal_flip(crop) if flip else crop


def test_crops_of_any_size_equal_torchvision_antialiased_crop_then_resize() -> None:
    """Boxes from 7 px (upscaled 3.4x) to 128 px (downscaled 5.3x), in images of four sizes."""
    images = random_images([(50, 70), (90, 40), (33, 33), (120, 128)])
    boxes = [
        [3, 5, 20, 24],
        [0, 0, 90, 40],
        [10, 0, 7, 31],
        [0, 0, 120, 128],
        [5, 7, 100, 60],
        [1, 2, 30, 31],
    ]
    index = [0, 1, 2, 3, 3, 2]
    flips = [False, True, False, True, False, True]
    views = filtered_crops(
        packed(images), torch.tensor(index), torch.tensor(boxes).float(), torch.tensor(flips), 24
    )
    assert views.shape == (6, 3, 24, 24) and views.dtype == torch.float32
    for view, n, box, flip in zip(views, index, boxes, flips, strict=True):
        torch.testing.assert_close(view, torchvision_crop(images[n], box, 24, flip), atol=1e-5, rtol=0)


def test_a_400_px_crop_at_224_is_antialiased_where_bilinear_resampling_aliases() -> None:
    """The case of the issue: a 400 px crop of a 500 x 430 photo resized to 224 px (1.8x). Fine detail
    (one-pixel stripes, here) averages out under torchvision's antialiased filter; plain bilinear
    resampling (the batched path for images of one size) keeps sampling it and aliases."""
    stripes = (torch.arange(500) % 2 * 255).to(torch.uint8).view(1, 1, 500).expand(3, 430, 500).contiguous()
    noise = random_images([(430, 500)], seed=1)[0]
    image = torch.where(torch.arange(430).view(1, 430, 1) < 215, stripes, noise)
    box = [10, 40, 400, 400]
    expected = torchvision_crop(image, box, 224, flip=False)
    ours = filtered_crops(
        packed([image]), torch.tensor([0]), torch.tensor([box]).float(), torch.tensor([False]), 224
    )[0]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    bilinear = resample(image[None].float() / 255, torch.tensor([box]).float(), torch.tensor([False]), 224)[0]
    assert (bilinear - expected).abs().amax() > 0.2  # the aliasing this path removes


def test_pixels_outside_the_readable_region_read_zero() -> None:
    """The probe view's zero-padded crop: a box of a native-size image shifted by whole pixels."""
    image = random_images([(16, 16)])[0]
    box = torch.tensor([[-2.0, 3.0, 16.0, 16.0]])
    view = filtered_crops(packed([image]), torch.tensor([0]), box, torch.tensor([False]), 16)[0]
    padded = torch.nn.functional.pad(image.float() / 255, (4, 4, 4, 4))
    torch.testing.assert_close(view, padded[:, 2:18, 7:23], atol=1e-6, rtol=0)
    region = torch.tensor([[0, 0, 16, 10]])  # the first 10 columns only, e.g. a central square
    view = filtered_crops(packed([image]), torch.tensor([0]), box, torch.tensor([False]), 16, region)[0]
    assert (view[:, :, 7:] == 0).all()
    torch.testing.assert_close(view[:, :, :7], padded[:, 2:18, 7:14], atol=1e-6, rtol=0)


def test_kernels_per_batch_do_not_grow_with_the_number_of_images() -> None:
    launches = []
    for count in (4, 16):
        sizes = [(40 + 7 * (n % 5), 64 - 5 * (n % 4)) for n in range(count)]
        sizes[0] = (64, 64)  # the same largest sides, hence the same number of filter taps, in both batches
        images = random_images(sizes)
        boxes = torch.tensor([[0, 0, h, w] for h, w in sizes]).float()
        flips = torch.zeros(count, dtype=torch.bool)
        ops = count_aten_ops(lambda: filtered_crops(packed(images), torch.arange(count), boxes, flips, 16))  # noqa: B023
        assert ops.host_syncs() == 0
        # 64 px onto 16 px: 9 taps down and 9 along, one gather and one multiply-add each.
        assert ops["aten::index_select"] == ops["aten::gather"] == 9 and ops["aten::addcmul_"] == 18
        launches.append(ops.launching())
    assert launches[0] == launches[1] <= 150  # 135 with torch 2.14


def test_views_made_in_chunks_within_the_memory_budget_equal_those_made_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    images = random_images([(50, 70), (90, 40), (33, 33), (120, 128)])
    boxes = torch.tensor([[3, 5, 20, 24], [0, 0, 90, 40], [10, 0, 7, 31], [0, 0, 120, 128], [5, 7, 100, 60]])
    index, flips = torch.tensor([0, 1, 2, 3, 3]), torch.tensor([False, True, False, True, False])
    at_once = filtered_crops(packed(images), index, boxes.float(), flips, 24)
    budget = 2 * 3 * 24 * 128  # two views' first pass at a time: chunks of 2, 2 and 1
    monkeypatch.setattr(filtered_crops_module, "intermediate_budget", lambda device: budget)
    ops = count_aten_ops(lambda: filtered_crops(packed(images), index, boxes.float(), flips, 24))
    assert ops["aten::cat"] == 2  # the packing, and the three chunks joined
    assert torch.equal(filtered_crops(packed(images), index, boxes.float(), flips, 24), at_once)
