"""The compiled pixel kernels compute what torchvision's functions on PIL images compute.

The colour operations are compared on every one of the 16.7M RGB colours (one 4096 x 4096 image), so
no rounding corner of Pillow's float arithmetic can hide; the blur on photographs, where its tolerance
(one grey level, from the dropped tails and float32 summation order) is stated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F1
from PIL import Image

from views import pixel_kernels
from views.config import BRIGHTNESS, CONTRAST, HUE, SATURATION


@pytest.fixture(scope="module")
def every_colour() -> np.ndarray:
    codes = np.arange(1 << 24, dtype=np.uint32)
    channels = [(codes >> 16) & 255, (codes >> 8) & 255, codes & 255]
    return np.stack(channels, axis=-1).astype(np.uint8).reshape(4096, 4096, 3)


def photo(size: int, seed: int) -> np.ndarray:
    """Smooth colour fields plus noise: edges and flat areas, as in a real view."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BILINEAR)).astype(int)
    return np.clip(smooth + rng.integers(-25, 26, size=(size, size, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("operation", "reference", "factor"),
    [
        (BRIGHTNESS, F1.adjust_brightness, 1.37),
        (CONTRAST, F1.adjust_contrast, 0.61),
        (SATURATION, F1.adjust_saturation, 1.71),
        (SATURATION, F1.adjust_saturation, 0.0),
        (HUE, F1.adjust_hue, -0.33),
        (HUE, F1.adjust_hue, 0.5),
    ],
)
def test_each_jitter_operation_equals_torchvisions_pil_function_on_every_colour(
    every_colour: np.ndarray, operation: int, reference, factor: float
) -> None:
    expected = np.asarray(reference(Image.fromarray(every_colour), factor))
    ours = pixel_kernels.jitter(every_colour, ((operation, factor),), grayscale=False)
    np.testing.assert_array_equal(ours, expected)


def test_grayscale_equals_torchvisions_on_every_colour(every_colour: np.ndarray) -> None:
    expected = np.asarray(F1.rgb_to_grayscale(Image.fromarray(every_colour), num_output_channels=3))
    np.testing.assert_array_equal(pixel_kernels.jitter(every_colour, (), grayscale=True), expected)


def test_operations_chain_in_the_order_given_on_a_flipped_view() -> None:
    pixels = photo(48, seed=1)
    flipped = pixels[:, ::-1]  # a negative-stride view, as the renderer passes a flip
    operations = ((SATURATION, 1.4), (HUE, 0.2), (CONTRAST, 0.7), (BRIGHTNESS, 1.2))
    functions = {BRIGHTNESS: F1.adjust_brightness, CONTRAST: F1.adjust_contrast,
                 SATURATION: F1.adjust_saturation, HUE: F1.adjust_hue}  # fmt: skip
    expected = Image.fromarray(np.ascontiguousarray(flipped))
    for operation, factor in operations:
        expected = functions[operation](expected, factor)
    expected = F1.rgb_to_grayscale(expected, num_output_channels=3)
    ours = pixel_kernels.jitter(flipped, operations, grayscale=True)
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, np.asarray(expected))
    np.testing.assert_array_equal(pixel_kernels.jitter(flipped, (), grayscale=False), flipped)


@pytest.mark.parametrize("sigma", [0.1, 0.6, 1.3, 2.0])
def test_blur_is_within_one_grey_level_of_torchvisions(sigma: float) -> None:
    for seed in range(3):
        pixels = photo(64, seed)
        expected = F1.gaussian_blur(torch.from_numpy(pixels).permute(2, 0, 1), [23, 23], [sigma, sigma])
        difference = np.abs(
            pixel_kernels.gaussian_blur(pixels, sigma, 23).astype(int) - expected.permute(1, 2, 0).numpy()
        )
        assert difference.max() <= 1
        assert (difference > 0).mean() < 0.01  # rounding ties only: almost every pixel is exact
        assert np.abs(pixels.astype(int) - expected.permute(1, 2, 0).numpy()).max() > 3 or sigma < 0.3


def test_blur_drops_only_the_negligible_tails() -> None:
    full = pixel_kernels.blur_weights(2.0, 23)
    assert len(full) == 17 and len(pixel_kernels.blur_weights(0.5, 23)) == 5
    pad = 11
    reference = np.exp(-0.5 * ((np.arange(23) - pad) / 2.0) ** 2)
    reference /= reference.sum()
    assert 1.0 - full.sum() < 1e-4
    np.testing.assert_allclose(full, reference[pad - 8 : pad + 9], rtol=1e-6)


def test_normalise_writes_channels_first_floats_as_torchvision_normalises() -> None:
    pixels = photo(20, seed=4)[:, ::-1]
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    scale = np.array([1 / (255 * s) for s in std], np.float32)
    shift = np.array([-m / s for m, s in zip(mean, std, strict=True)], np.float32)
    out = np.empty((3, 20, 20), np.float32)
    pixel_kernels.normalise_into(pixels, out, scale, shift)
    scaled = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1) / 255.0
    expected = F1.normalize(scaled, mean, std)
    torch.testing.assert_close(torch.from_numpy(out), expected, atol=1e-5, rtol=0)
