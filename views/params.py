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


# The sides of the images samples are drawn from: one for all (an int), or one per sample ([n] float).
Sides = int | Tensor


def _per_sample(value: float | Tensor) -> float | Tensor:
    """A per-sample value [n] as [n, 1], to broadcast over the crop attempts; a number as it is."""
    return value[:, None] if isinstance(value, Tensor) else value


def _central_crop_size(height: Sides, width: Sides, ratio: tuple[float, float]) -> tuple[Sides, Sides]:
    """torchvision's fallback when no attempt fits: the largest central crop with an allowed ratio."""
    in_ratio = width / height
    if isinstance(in_ratio, Tensor):
        crop_h = torch.where(in_ratio < min(ratio), torch.round(width / min(ratio)), height)
        crop_w = torch.where(in_ratio > max(ratio), torch.round(height * max(ratio)), width)
        return crop_h, crop_w
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def _resized_crops(
    uniforms: Tensor, height: Sides, width: Sides, scale: tuple[float, float], ratio: tuple[float, float]
) -> Tensor:
    """RandomResizedCrop.make_params for each row of `uniforms` [n, CROP_COLUMNS]: boxes [n, 4].

    Same rejection sampling as torchvision (area fraction uniform in `scale`, log aspect ratio uniform,
    rounded sides, CROP_ATTEMPTS tries, then the central fallback), all tries at once: no Python loop
    and no host sync. Every sample draws from its own image's sides when `height` and `width` are
    per-sample tensors.
    """
    area = height * width
    target_area = uniforms[:, :CROP_ATTEMPTS] * _per_sample(area * (scale[1] - scale[0]))
    target_area = target_area + _per_sample(area * scale[0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(uniforms[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS] * (log_high - log_low) + log_low)
    widths = torch.round(torch.sqrt(target_area * aspect))
    heights = torch.round(torch.sqrt(target_area / aspect))
    valid = (widths > 0) & (widths <= _per_sample(width)) & (heights > 0) & (heights <= _per_sample(height))
    first_valid = valid.to(torch.int32).argmax(dim=1, keepdim=True)  # the first maximum: the first valid try
    found = valid.any(dim=1)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    crop_h = torch.where(found, heights.gather(1, first_valid).squeeze(1), _as_float(fallback_h))
    crop_w = torch.where(found, widths.gather(1, first_valid).squeeze(1), _as_float(fallback_w))
    # randint(0, side - crop + 1): every position is equally likely; the fallback is centred.
    top = torch.floor(uniforms[:, -2] * ((height + 1) - crop_h))
    left = torch.floor(uniforms[:, -1] * ((width + 1) - crop_w))
    top = torch.where(found, top, _as_float((height - fallback_h) // 2))
    left = torch.where(found, left, _as_float((width - fallback_w) // 2))
    return torch.stack([top, left, crop_h, crop_w], dim=1)


def _as_float(value: Sides) -> float | Tensor:
    return value if isinstance(value, Tensor) else float(value)


def sample_resized_crops(
    n: int,
    height: Sides,
    width: Sides,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """n independent RandomResizedCrop boxes [n, 4] (top, left, height, width) in whole pixels; the
    sides are those of one image for all, or of each sample's image ([n] tensors)."""
    uniforms = torch.rand(n, CROP_COLUMNS, generator=generator, device=torch.device(device))
    return _resized_crops(uniforms, height, width, scale, ratio)


def sample_view_params(
    n: int,
    height: Sides,
    width: Sides,
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
    n: int,
    height: Sides,
    width: Sides,
    image_size: int,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """`views.transforms.probe_transform`'s crop and flip: boxes [n, 4] and flips [n].

    Small images get a RandomCrop(size, padding=size // 8) after resizing to size x size, which is a
    box of the whole image shifted by a whole number of output pixels in [-pad, pad] (the zero padding
    comes from the resampling); larger ones a RandomResizedCrop. With per-sample sides (images of any
    size), the box shifted is each image's central square, which the per-image probe view resizes.
    """
    uniforms = torch.rand(n, CROP_COLUMNS + 1, generator=generator, device=device)
    flip = uniforms[:, -1] < 0.5
    if image_size > SMALL_IMAGE_MAX_SIZE:
        return _resized_crops(uniforms[:, :-1], height, width, (0.08, 1.0), DEFAULT_CROP_RATIO), flip
    pad = image_size // 8
    shift = torch.floor(uniforms[:, :2] * (2 * pad + 1)) - pad  # each of the 2 pad + 1 shifts equally likely
    if isinstance(height, Tensor):
        square = central_squares(height, width)
        step = square[:, 2] / image_size
        return torch.addcmul(square, torch.cat([shift, torch.zeros_like(shift)], dim=1), step[:, None]), flip
    top = shift[:, 0] * (height / image_size)
    left = shift[:, 1] * (width / image_size)
    return torch.stack([top, left, torch.full_like(top, height), torch.full_like(top, width)], dim=1), flip


def central_squares(height: Tensor, width: Tensor) -> Tensor:
    """Each image's largest central square as a box [n, 4]: what Resize(S) + CenterCrop(S) keeps."""
    side = torch.minimum(height, width)
    return torch.stack([(height - side) // 2, (width - side) // 2, side, side], dim=1)


class DeviceGenerators:
    """One generator per device, reseeded for each batch: the views of a batch are a function of its
    seed alone. Seeding is host-side, so reseeding costs no device sync."""

    def __init__(self) -> None:
        self._generators: dict[torch.device, torch.Generator] = {}

    def seeded(self, device: torch.device, seed: int) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
        return generator.manual_seed(seed)
