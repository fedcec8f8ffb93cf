"""SimCLR views made one image at a time: for images of mixed sizes, and large views on CPU.

Each view is a crop and an antialiased resize by torch's uint8 kernel (the one torchvision's v2 tensor
transforms run), then the compiled pixel kernels (views/pixel_kernels.py) for the colour jitter,
grayscale and blur, and normalisation straight into the batch in the collate function. Files of an
image folder are decoded for their two crops (views/crop_decode.py). Measured per core against the
peers' torchvision v1 pipeline on PIL (`python bench/views.py`, BENCHMARKS.md), this path went from
3.15x to 4.02x at 32 px, 2.08x to 4.95x at 96 px with blur, and 4.8x to 12.7x at 224 px on JPEG photos
of varied sizes with decoding counted (from 1.1x to 2.9x lightly's), the old path being Pillow
operations throughout: Pillow's hue step, its resize and the batch normalisation cost the most there.

Every parameter is drawn with the distribution of torchvision's SimCLR pipeline (RandomResizedCrop's
rejection sampling, RandomHorizontalFlip, RandomApply(ColorJitter) with a random order of the four
operations, RandomGrayscale, RandomApply(GaussianBlur), RandomSolarize), from the same `AugmentConfig`
the batched path uses. Pixels: the crop equals torchvision v2's resized_crop on the tensor (within one
grey level of PIL's resize), the colour operations equal torchvision's PIL functions exactly, the blur is
within one grey level of torchvision's GaussianBlur (all tested in tests/views/).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from views import pixel_kernels
from views.config import (
    CROP_ATTEMPTS,
    DEFAULT_CROP_RATIO,
    HUE,
    SMALL_IMAGE_MAX_SIZE,
    AugmentConfig,
    blur_kernel_size,
)
from views.crop_decode import pil_to_tensor

# RandomSolarize(threshold=128) on uint8 pixels.
SOLARIZE_THRESHOLD = 128

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in source pixels, PIL's crop-box order
# Uniforms one crop consumes: an area and an aspect ratio per attempt, then the top and left position.
CROP_UNIFORMS = 2 * CROP_ATTEMPTS + 2


def sample_crop(
    uniforms: list[float], width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> Box:
    """RandomResizedCrop.get_params from CROP_UNIFORMS uniforms in [0, 1).

    The same rejection sampling as torchvision: area fraction uniform in `scale`, log aspect ratio
    uniform in log(`ratio`), sides rounded, CROP_ATTEMPTS tries, then the largest central crop whose
    aspect ratio is allowed; every position of an accepted crop is equally likely.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for attempt in range(CROP_ATTEMPTS):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * uniforms[attempt])
        aspect = math.exp(log_low + (log_high - log_low) * uniforms[CROP_ATTEMPTS + attempt])
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(uniforms[2 * CROP_ATTEMPTS] * (height - crop_h + 1))
            left = int(uniforms[2 * CROP_ATTEMPTS + 1] * (width - crop_w + 1))
            return left, top, left + crop_w, top + crop_h
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_w, crop_h = int(round(height * max(ratio))), height
    else:
        crop_w, crop_h = width, height
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


@dataclass(frozen=True)
class ViewDraw:
    """The random parameters of one view; `jitter` lists (operation, factor) in the order applied."""

    box: Box
    flip: bool
    jitter: tuple[tuple[int, float], ...]
    grayscale: bool
    blur_sigma: float | None
    solarize: bool


def crop_resize(image: Tensor, box: Box, size: int) -> np.ndarray:
    """torchvision's resized_crop on a uint8 tensor: the box, antialiased bilinear to size x size.

    image: uint8 [3, H, W]; returns uint8 [size, size, 3]. torch's uint8 kernel for channels-last
    images (the layout of a decoded image) is what torchvision's tensor transforms run; it is within one
    grey level of Pillow's BILINEAR resize (tested) and measured 6x faster at 224 px.
    """
    left, top, right, bottom = box
    crop = image[:, top:bottom, left:right].unsqueeze(0).contiguous(memory_format=torch.channels_last)
    if crop.shape[-2:] != (size, size):
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return crop[0].permute(1, 2, 0).numpy()


class PilSimCLRView:
    """One SimCLR view of a PIL image or a decoded uint8 [3, H, W] tensor, as uint8 [S, S, 3].

    The name is kept from when every step was a Pillow call; the collate function normalises.
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self.blur_kernel = blur_kernel_size(config.image_size)

    def draw(self, rng: np.random.Generator, width: int, height: int) -> ViewDraw:
        """All parameters of one view from one call to the generator."""
        config = self.config
        u = rng.random(CROP_UNIFORMS + 14).tolist()
        box = sample_crop(u, width, height, config.crop_scale, config.crop_ratio)
        u = u[CROP_UNIFORMS:]
        jitter: tuple[tuple[int, float], ...] = ()
        if u[1] < config.jitter_p:
            (b_low, b_high), (c_low, c_high), (s_low, s_high), hue_bound = config.jitter_ranges
            factors = (
                b_low + (b_high - b_low) * u[2],
                c_low + (c_high - c_low) * u[3],
                s_low + (s_high - s_low) * u[4],
                -hue_bound + 2.0 * hue_bound * u[5],
            )
            # Sorting four i.i.d. uniforms gives a uniformly random order (ColorJitter's randperm(4)).
            order = sorted(range(4), key=lambda k: u[6 + k])
            jitter = tuple((op, factors[op]) for op in order)
        blur = config.blur and u[11] < config.blur_p
        sigma_low, sigma_high = config.blur_sigma
        return ViewDraw(
            box=box,
            flip=u[0] < config.flip_p,
            jitter=jitter,
            grayscale=u[10] < config.grayscale_p,
            blur_sigma=sigma_low + (sigma_high - sigma_low) * u[12] if blur else None,
            solarize=u[13] < config.solarize_p,
        )

    def render(self, image: Image.Image | Tensor, draw: ViewDraw) -> Tensor:
        """The view of a PIL image or a uint8 [3, H, W] tensor: uint8 [S, S, 3]."""
        if isinstance(image, Image.Image):
            image = pil_to_tensor(image)
        pixels = crop_resize(image, draw.box, self.config.image_size)
        if draw.flip:
            pixels = pixels[:, ::-1]
        # Factor 1 (hue 0) is the identity; skipping it keeps a switched-off jitter bit-exact.
        jitter = tuple((op, factor) for op, factor in draw.jitter if factor != (0.0 if op == HUE else 1.0))
        if jitter or draw.grayscale or draw.flip:
            pixels = pixel_kernels.jitter(pixels, jitter, draw.grayscale)
        if draw.blur_sigma is not None:
            pixels = pixel_kernels.gaussian_blur(pixels, draw.blur_sigma, self.blur_kernel)
        if draw.solarize:
            pixels = np.where(pixels >= SOLARIZE_THRESHOLD, 255 - pixels, pixels)
        return torch.from_numpy(pixels)

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Tensor:
        return self.render(image, self.draw(rng, *image.size))


class PilProbeView:
    """The online probe's weak view (as `transforms.probe_transform`) as a uint8 tensor [S, S, 3].

    Small images: fit to S x S (only when not already), then RandomCrop(S, padding=S // 8) with zero
    padding, as one Pillow crop whose box may reach outside the image. Large images: RandomResizedCrop.
    Then a horizontal flip with probability 0.5.
    """

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Tensor:
        size = self.image_size
        u = rng.random(CROP_UNIFORMS + 1).tolist()
        width, height = image.size
        if size > SMALL_IMAGE_MAX_SIZE:
            box = sample_crop(u, width, height, (0.08, 1.0), DEFAULT_CROP_RATIO)
            view = image.crop(box).resize((size, size), Image.Resampling.BILINEAR)
        else:
            if (width, height) != (size, size):
                # Resize(S) + CenterCrop(S): the central square, scaled to S x S.
                side = min(width, height)
                left, top = (width - side) // 2, (height - side) // 2
                square = image.crop((left, top, left + side, top + side))
                image = square.resize((size, size), Image.Resampling.BILINEAR)
            pad = size // 8
            dx, dy = int(u[0] * (2 * pad + 1)) - pad, int(u[1] * (2 * pad + 1)) - pad
            view = image.crop((dx, dy, dx + size, dy + size))
        if u[-1] < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return torch.from_numpy(np.array(view))
