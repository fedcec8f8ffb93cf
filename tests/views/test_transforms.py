from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from tests.datamodules.fake_data import unnormalise
from views.config import blur_kernel_size, uses_blur
from views.transforms import eval_transform, probe_transform

MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.2, 0.3)


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def steps_of(transform: v2.Compose) -> list[v2.Transform]:
    """Flattens Compose/RandomApply so the tests can inspect the configured operations."""
    flat: list[v2.Transform] = []
    for step in transform.transforms:
        flat.append(step)
        if isinstance(step, v2.RandomApply):
            flat.extend(step.transforms)
    return flat


def only(steps: list[v2.Transform], kind: type) -> v2.Transform:
    matching = [step for step in steps if isinstance(step, kind)]
    assert len(matching) == 1, f"expected one {kind.__name__}, found {len(matching)}"
    return matching[0]


@pytest.mark.parametrize(("image_size", "kernel"), [(32, 3), (96, 9), (224, 23), (64, 7)])
def test_blur_kernel_is_odd_and_about_a_tenth_of_the_image(image_size: int, kernel: int) -> None:
    assert blur_kernel_size(image_size) == kernel


@pytest.mark.parametrize(
    ("image_size", "blur", "expect_blur"),
    [(32, None, False), (96, None, True), (32, True, True), (224, False, False)],
)
def test_blur_defaults_to_on_from_96_pixels(image_size: int, blur: bool | None, expect_blur: bool) -> None:
    assert uses_blur(image_size, blur) == expect_blur


def test_eval_keeps_native_pixels_exactly_and_is_deterministic() -> None:
    image = random_image(32, 32)
    transform = eval_transform(32, MEAN, STD, native_size=32)
    output = transform(image)
    assert torch.equal(output, transform(image))
    np.testing.assert_array_equal(unnormalise(output, MEAN, STD), np.asarray(image))


def test_eval_resizes_fixed_size_datasets_to_the_requested_size() -> None:
    output = eval_transform(64, MEAN, STD, native_size=32)(random_image(32, 32))
    assert output.shape == (3, 64, 64)


def test_eval_of_arbitrary_sizes_resizes_by_1_over_0875_then_centre_crops() -> None:
    # 160x80 image: red | green (middle 80 columns) | blue. Resize(37) gives 74x37; the central 32 columns
    # map back to original columns ~45-115, all green; a squash-resize would have kept red and blue.
    pixels = np.zeros((80, 160, 3), dtype=np.uint8)
    pixels[:, :40, 0] = 255
    pixels[:, 40:120, 1] = 255
    pixels[:, 120:, 2] = 255
    transform = eval_transform(32, MEAN, STD, native_size=None)
    steps = transform.transforms
    assert only(steps, v2.Resize).size == [37]
    output = transform(Image.fromarray(pixels))
    assert output.shape == (3, 32, 32)
    restored = unnormalise(output, MEAN, STD)
    np.testing.assert_allclose(restored, np.broadcast_to([0, 255, 0], restored.shape), atol=2)


@pytest.mark.parametrize(("width", "height", "native"), [(32, 32, 32), (48, 40, None), (40, 40, 40)])
def test_small_probe_view_pads_and_crops_to_image_size(width: int, height: int, native: int | None) -> None:
    torch.manual_seed(0)
    transform = probe_transform(32, MEAN, STD, native_size=native)
    crop = only(steps_of(transform), v2.RandomCrop)
    assert crop.size == (32, 32) and crop.padding == [4, 4, 4, 4]
    outputs = torch.stack([transform(random_image(width, height)) for _ in range(8)])
    assert outputs.shape == (8, 3, 32, 32)
    assert not torch.equal(outputs[0], outputs[1])


def test_small_probe_view_skips_resizing_at_native_size() -> None:
    steps = steps_of(probe_transform(32, MEAN, STD, native_size=32))
    assert not any(isinstance(step, v2.Resize) for step in steps)


def test_large_probe_view_uses_random_resized_crop() -> None:
    transform = probe_transform(96, MEAN, STD, native_size=96)
    steps = steps_of(transform)
    assert only(steps, v2.RandomResizedCrop).scale == (0.08, 1.0)
    assert not any(isinstance(step, v2.RandomCrop) for step in steps)
    assert transform(random_image(120, 100)).shape == (3, 96, 96)
