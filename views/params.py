"""The random parameters of the views of a batch, drawn for every sample at once on its device.

Every sample draws its own parameters with the distributions of the per-image pipeline (torchvision v2
`RandomResizedCrop`, `RandomHorizontalFlip`, `RandomApply(ColorJitter, p)`, `RandomGrayscale`,
`RandomApply(GaussianBlur, p)`), from one `rand` call and with no host synchronisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from views.config import CROP_ATTEMPTS, DEFAULT_CROP_RATIO, SMALL_IMAGE_MAX_SIZE, AugmentConfig


@dataclass
class ViewParams:
    """Per-sample parameters of one view of a batch; boxes are (top, left, height, width) in source pixels."""

    boxes: Tensor  # [B, 4] float
    flip: Tensor  # [B] bool
    jitter: Tensor  # [B] bool: colour jitter applied
    brightness: Tensor  # [B]
    contrast: Tensor  # [B]
    saturation: Tensor  # [B]
    hue: Tensor  # [B]
    jitter_order: Tensor  # [B, 4] long: a random permutation of BRIGHTNESS..HUE per sample
    grayscale: Tensor  # [B] bool
    blur: Tensor  # [B] bool
    sigma: Tensor  # [B]
    solarize: Tensor  # [B] bool


# One uniform draw per sample feeds every view parameter: a crop needs CROP_COLUMNS, a view VIEW_COLUMNS.
CROP_COLUMNS = 2 * CROP_ATTEMPTS + 2
VIEW_COLUMNS = CROP_COLUMNS + 14


def _central_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback when no attempt fits: the largest central crop with an allowed ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def _resized_crops(
    uniforms: Tensor, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> Tensor:
    """RandomResizedCrop.make_params for each row of `uniforms` [n, CROP_COLUMNS]: boxes [n, 4].

    Same rejection sampling as torchvision (area fraction uniform in `scale`, log aspect ratio uniform,
    rounded sides, CROP_ATTEMPTS tries, then the central fallback), all tries at once: no Python loop
    and no host sync.
    """
    area = height * width
    target_area = uniforms[:, :CROP_ATTEMPTS] * (area * (scale[1] - scale[0])) + area * scale[0]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(uniforms[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS] * (log_high - log_low) + log_low)
    widths = torch.round(torch.sqrt(target_area * aspect))
    heights = torch.round(torch.sqrt(target_area / aspect))
    valid = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first_valid = valid.to(torch.int32).argmax(dim=1, keepdim=True)  # the first maximum: the first valid try
    found = valid.any(dim=1)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    crop_h = torch.where(found, heights.gather(1, first_valid).squeeze(1), float(fallback_h))
    crop_w = torch.where(found, widths.gather(1, first_valid).squeeze(1), float(fallback_w))
    # randint(0, side - crop + 1): every position is equally likely; the fallback is centred.
    top = torch.floor(uniforms[:, -2] * ((height + 1) - crop_h))
    left = torch.floor(uniforms[:, -1] * ((width + 1) - crop_w))
    top = torch.where(found, top, float((height - fallback_h) // 2))
    left = torch.where(found, left, float((width - fallback_w) // 2))
    return torch.stack([top, left, crop_h, crop_w], dim=1)


def sample_resized_crops(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """n independent RandomResizedCrop boxes [n, 4] (top, left, height, width) in whole pixels."""
    uniforms = torch.rand(n, CROP_COLUMNS, generator=generator, device=torch.device(device))
    return _resized_crops(uniforms, height, width, scale, ratio)


def sample_view_params(
    n: int,
    height: int,
    width: int,
    config: AugmentConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> ViewParams:
    """Independent parameters for each of n samples, drawn as the CPU pipeline draws them per image.

    All from one `rand` call: on a GPU a launch per parameter would cost more than the draws.
    """
    u = torch.rand(n, VIEW_COLUMNS, generator=generator, device=torch.device(device))
    (b_low, b_high), (c_low, c_high), (s_low, s_high), hue_bound = config.jitter_ranges
    sigma_low, sigma_high = config.blur_sigma
    k = CROP_COLUMNS
    return ViewParams(
        boxes=_resized_crops(u[:, :k], height, width, config.crop_scale, config.crop_ratio),
        flip=u[:, k] < config.flip_p,
        jitter=u[:, k + 1] < config.jitter_p,
        brightness=u[:, k + 2] * (b_high - b_low) + b_low,
        contrast=u[:, k + 3] * (c_high - c_low) + c_low,
        saturation=u[:, k + 4] * (s_high - s_low) + s_low,
        hue=u[:, k + 5] * (2.0 * hue_bound) - hue_bound,
        # argsort of i.i.d. uniforms: a uniformly random permutation per row (ColorJitter's randperm(4)).
        jitter_order=u[:, k + 6 : k + 10].argsort(dim=1),
        grayscale=u[:, k + 10] < config.grayscale_p,
        blur=u[:, k + 11] < (config.blur_p if config.blur else 0.0),
        sigma=u[:, k + 12] * (sigma_high - sigma_low) + sigma_low,
        solarize=u[:, k + 13] < config.solarize_p,
    )


def probe_boxes(
    n: int, height: int, width: int, image_size: int, generator: torch.Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """`views.transforms.probe_transform`'s crop and flip: boxes [n, 4] and flips [n].

    Small images get a RandomCrop(size, padding=size // 8) after resizing to size x size, which is a
    box of the whole image shifted by a whole number of output pixels in [-pad, pad] (the zero padding
    comes from grid_sample); larger ones a RandomResizedCrop.
    """
    uniforms = torch.rand(n, CROP_COLUMNS + 1, generator=generator, device=device)
    flip = uniforms[:, -1] < 0.5
    if image_size > SMALL_IMAGE_MAX_SIZE:
        return _resized_crops(uniforms[:, :-1], height, width, (0.08, 1.0), DEFAULT_CROP_RATIO), flip
    pad = image_size // 8
    shift = torch.floor(uniforms[:, :2] * (2 * pad + 1)) - pad  # each of the 2 pad + 1 shifts equally likely
    top = shift[:, 0] * (height / image_size)
    left = shift[:, 1] * (width / image_size)
    return torch.stack([top, left, torch.full_like(top, height), torch.full_like(top, width)], dim=1), flip
