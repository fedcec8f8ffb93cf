"""SimCLR views made one image at a time with PIL: for images of mixed sizes, and large views on CPU.

Measured per core (`python bench/views.py`: 2,000 real CIFAR-10 JPEGs decoded once, one thread, 9
interleaved rounds on the idle 2-core project machine; BENCHMARKS.md), this path makes 2.77x the views/s
of the usual torchvision v1 pipeline on PIL at 32 px and 1.78x at 96 px with blur; torchvision v2 on
uint8 tensors, the former default here, made about 0.5x and 0.85x. Pillow's uint8 operations beat
torch's on single small images (v1 loses its time to per-call overhead, v2 to its tensor colour ops,
the hue step above all). So each view is a handful of Pillow calls on uint8 pixels: a crop and a
resize, brightness and contrast as one blend each, saturation as one colour-matrix `convert`, hue as an
HSV round trip with a modular shift of H. Only the Gaussian blur (a per-sample kernel Pillow does not
offer) runs in torch, and normalisation is one pass over the whole batch in the collate function.

Every parameter is drawn with the distribution of torchvision's SimCLR pipeline (RandomResizedCrop's
rejection sampling, RandomHorizontalFlip, RandomApply(ColorJitter) with a random order of the four
operations, RandomGrayscale, RandomApply(GaussianBlur), RandomSolarize), from the same `AugmentConfig`
the batched path uses. Pixel results equal torchvision's PIL functions, except saturation (within one
grey level: one colour-matrix pass with the exact luma weights instead of Pillow's rounded grey image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageChops
from torch import Tensor

from views.config import (
    BRIGHTNESS,
    CONTRAST,
    CROP_ATTEMPTS,
    DEFAULT_CROP_RATIO,
    HUE,
    LUMA_WEIGHTS,
    SATURATION,
    SMALL_IMAGE_MAX_SIZE,
    AugmentConfig,
    blur_kernel_size,
)

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


def _saturation_matrix(factor: float) -> tuple[float, ...]:
    """Pillow's RGB->RGB matrix for out_c = factor * x_c + (1 - factor) * luma(x), clipped.

    One pass instead of Pillow's grey image and blend (what torchvision's PIL function does). Pillow
    rounds a matrix result (adds 0.5, truncates) where blend truncates: the -0.5 offset truncates too.
    """
    rows: list[float] = []
    for channel in range(3):
        row = [(1.0 - factor) * weight for weight in LUMA_WEIGHTS]
        row[channel] += factor
        rows += [*row, -0.5]
    return tuple(rows)


def _apply_jitter(image: Image.Image, operation: int, factor: float) -> Image.Image:
    """torchvision's adjust_brightness/contrast/saturation/hue on a PIL image, with fewer Pillow passes.

    Brightness and contrast are the blends torchvision's PIL functions make (identical results);
    saturation is one matrix pass (within one grey level: exact luma instead of Pillow's rounded grey).
    """
    if operation == BRIGHTNESS:
        return Image.blend(Image.new("RGB", image.size), image, factor)
    if operation == CONTRAST:
        # The mean of the grey image, rounded, as torchvision's PIL contrast (via ImageStat) uses it.
        grey = image.convert("L")
        mean = grey.reduce(grey.size).getpixel((0, 0))
        return Image.blend(Image.new("RGB", image.size, (mean,) * 3), image, factor)  # type: ignore[arg-type]
    if operation == SATURATION:
        return image.convert("RGB", _saturation_matrix(factor))
    # Hue: a shift of H by int(factor * 255) modulo 256, exactly torchvision's PIL adjust_hue.
    hsv = image.convert("HSV")
    shift = Image.new("HSV", hsv.size, (int(factor * 255) % 256, 0, 0))
    return ImageChops.add_modulo(hsv, shift).convert("RGB")


def _gaussian_blur(pixels: Tensor, sigma: float, kernel_size: int) -> Tensor:
    """torchvision's GaussianBlur on uint8 [H, W, 3]: separable kernel, reflect padding, rounded back.

    kernel_size shifted multiply-adds per direction on one image stay in cache: measured faster than
    a grouped convolution per image or over the batch, and than scipy's correlate1d.
    """
    pad = kernel_size // 2
    offsets = torch.arange(kernel_size, dtype=torch.float32) - pad
    weights = torch.softmax(-(offsets**2) / (2.0 * sigma**2), dim=0).tolist()
    height, width, _ = pixels.shape
    image = pixels.float()
    for dim, size in ((1, width), (0, height)):
        # Reflect padding without repeating the edge, as torchvision pads.
        source = torch.arange(-pad, size + pad).abs()
        source = torch.where(source > size - 1, 2 * (size - 1) - source, source)
        padded = image.index_select(dim, source)
        image = padded.narrow(dim, 0, size) * weights[0]
        for k in range(1, kernel_size):
            image.add_(padded.narrow(dim, k, size), alpha=weights[k])
    return image.round_().clamp_(0, 255).to(torch.uint8)


class PilSimCLRView:
    """One SimCLR view of a PIL image: a uint8 tensor [S, S, 3] (channels last, normalised per batch)."""

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

    def render(self, image: Image.Image, draw: ViewDraw) -> Tensor:
        size = self.config.image_size
        # Crop first: resize(box=...) alone would let the filter read pixels outside the box.
        view = image.crop(draw.box).resize((size, size), Image.Resampling.BILINEAR)
        if draw.flip:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for operation, factor in draw.jitter:
            # Factor 1 (hue 0) is the identity; skipping it keeps a switched-off jitter bit-exact.
            if factor != (0.0 if operation == HUE else 1.0):
                view = _apply_jitter(view, operation, factor)
        if draw.grayscale:
            view = view.convert("L").convert("RGB")
        pixels = torch.from_numpy(np.array(view))
        if draw.blur_sigma is not None:
            pixels = _gaussian_blur(pixels, draw.blur_sigma, self.blur_kernel)
        if draw.solarize:
            pixels = torch.where(pixels >= SOLARIZE_THRESHOLD, 255 - pixels, pixels)
        return pixels

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
