"""SimCLR views for a whole batch at once, from uint8 images: the batched view path (the default).

A per-image pipeline spends its time in a dozen tiny operations per view. Here every sample still
draws its own parameters, with the distributions of the per-image pipeline (torchvision v2
`RandomResizedCrop`, `RandomHorizontalFlip`, `RandomApply(ColorJitter, p)`, `RandomGrayscale`,
`RandomApply(GaussianBlur, p)`), but each operation is one batched tensor call: one `grid_sample`
crops both views and the probe view of every image, and the colour work runs once over both views.
Eager, a 512-image CIFAR batch takes under 200 kernel launches (tests/datamodules/test_gpu_augment.py
counts them). Everything is plain torch with no host synchronisation and no per-batch host-to-device
copy, so it runs on the accelerator after the transfer and, on CPU-only runs, in DataLoader workers.

Known differences from the per-image pipeline, none of which changes a parameter distribution: the
colour operations run in float instead of uint8 (no rounding between them), and crops are resized
bilinearly without antialiasing, which only matters when a crop is larger than the output (e.g. a
96 px image trained at 64 px; never for CIFAR at 32 px or STL-10 at 96 px). Bilinear taps are clamped
to the crop box, so a view reads only pixels inside its box, as torchvision's crop-then-resize does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.transforms import SMALL_IMAGE_MAX_SIZE, Triple, blur_kernel_size, uses_blur

# torchvision's RandomResizedCrop defaults and its number of rejection-sampling attempts.
DEFAULT_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)
# RandomSolarize(threshold=128) on uint8 images, expressed on the [0, 1] scale.
SOLARIZE_THRESHOLD = 128 / 255
# Order of the colour-jitter operations in `ViewParams.jitter_order` (torchvision's fn_idx order).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


@dataclass(frozen=True)
class AugmentConfig:
    """The SimCLR augmentation of one view; probabilities are exposed so a test can switch steps off."""

    image_size: int
    mean: Triple
    std: Triple
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = DEFAULT_CROP_RATIO
    flip_p: float = 0.5
    jitter_strength: float = 1.0
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur: bool = False
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    @classmethod
    def simclr(
        cls,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        jitter_strength: float = 1.0,
        min_crop_scale: float = 0.08,
        blur: bool | None = None,
        solarize_p: float = 0.0,
    ) -> AugmentConfig:
        """The same settings, with the same blur rule, as the per-image views (`pil_views.PilSimCLRView`)."""
        return cls(
            image_size=image_size,
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            crop_scale=(min_crop_scale, 1.0),
            jitter_strength=jitter_strength,
            blur=uses_blur(image_size, blur),
            solarize_p=solarize_p,
        )

    @property
    def jitter_ranges(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]:
        """Brightness, contrast, saturation factor ranges and the hue bound: ColorJitter(0.8s, .., 0.2s)."""
        s = self.jitter_strength
        factor_range = (max(0.0, 1.0 - 0.8 * s), 1.0 + 0.8 * s)
        return factor_range, factor_range, factor_range, min(0.5, 0.2 * s)


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


def sampling_grid(boxes: Tensor, flip: Tensor, size: int, height: int, width: int) -> Tensor:
    """grid_sample's grid [n, size, size, 2] that crops each box, resizes it (bilinear) and mirrors it.

    Output pixel c of a box starting at `left` with width w reads source position
    left + (c + 0.5) * w / size - 0.5 (the pixel-centre convention of torchvision's resize), clamped to
    the centres of the box's first and last pixels: both bilinear taps then lie inside the box, as when
    torchvision crops first and resizes the crop, which clamps at the crop's border.
    """
    steps = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size  # [size]
    top, left, box_h, box_w = boxes.to(torch.float32)[:, :, None].unbind(dim=1)  # each [n, 1]
    # Positions in "pixel index + 0.5" units, where pixel p spans [p, p + 1).
    x = torch.addcmul(left, torch.where(flip[:, None], 1.0 - steps, steps), box_w)  # [n, size]
    y = torch.addcmul(top, steps, box_h)
    x = torch.minimum(torch.maximum(x, left + 0.5), left + box_w - 0.5)
    y = torch.minimum(torch.maximum(y, top + 0.5), top + box_h - 0.5)
    # To grid_sample's [-1, 1] (align_corners=False: -1 and 1 are the outer edges of the image).
    grid_x = (x * (2.0 / width) - 1.0)[:, None, :].expand(-1, size, -1)
    grid_y = (y * (2.0 / height) - 1.0)[:, :, None].expand(-1, -1, size)
    return torch.stack([grid_x, grid_y], dim=-1)


def resample(images: Tensor, boxes: Tensor, flip: Tensor, size: int, padding_mode: str = "zeros") -> Tensor:
    """Each image [B, C, H, W] cropped to its box, resized to size x size (bilinear), mirrored where `flip`.

    Only pixels inside a box are read, so `padding_mode` matters only for boxes reaching outside the
    image (the probe's padded crop, which wants "zeros").
    """
    _, _, height, width = images.shape
    grid = sampling_grid(boxes, flip, size, height, width)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


# Constants are built once per device and dtype: a tensor made from a Python list on an accelerator is a
# blocking host-to-device copy, which per batch would stall the training loop.
@functools.lru_cache(maxsize=64)
def _channel_constants(values: Triple, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[1, 3, 1, 1] on `device`."""
    return torch.tensor(values, dtype=dtype).view(1, 3, 1, 1).to(device)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """ITU-R 601-2 luma [B, 1, H, W] of [B, 3, H, W] as one batched matrix product (one kernel, not five;
    measured on CPU 2.5x faster than the weighted sum and 40x faster than a 1x1 convolution)."""
    batch, _, height, width = images.shape
    luma = _channel_constants(LUMA_WEIGHTS, images.device, images.dtype).view(1, 1, 3)
    return torch.matmul(luma, images.reshape(batch, 3, height * width)).view(batch, 1, height, width)


def adjust_hue(images: Tensor, hue_factor: Tensor) -> Tensor:
    """torchvision's adjust_hue (an HSV round trip, Pillow's formulas) for a batch, hue_factor [B].

    The way back is the closed form min + chroma * clamp(|k - 2|, 1, 2) with k = (n + 6h) mod 6 for
    n = 5, 3, 1 (R, G, B); it equals v - chroma * clamp(min(k, 4 - k), 0, 1). Grey pixels have chroma 0,
    so whatever hue they get they come back unchanged, without masking. Channel-wise elementwise ops
    and a floor instead of max-with-index, roll and remainder: measured 2x faster on CPU.
    """
    r, g, b = images.unbind(dim=1)
    value = torch.maximum(torch.maximum(r, g), b)
    minimum = torch.minimum(torch.minimum(r, g), b)
    chroma = value - minimum
    # 6 x hue (before the mod 6): red's formula where red is largest, else green's, else blue's.
    sixths = torch.where(
        r == value,
        g - b,
        torch.where(g == value, torch.add(b - r, chroma, alpha=2.0), torch.add(r - g, chroma, alpha=4.0)),
    ).div_(chroma.clamp_min(1e-12))
    shift = torch.arange(3, -3, -2, device=images.device, dtype=images.dtype) + 6.0 * hue_factor.to(
        images.dtype
    ).unsqueeze(1)  # n - 2 + 6 * hue_factor, [B, 3]
    k = sixths.unsqueeze(1) + shift.view(-1, 3, 1, 1)  # k - 2 before the mod
    periods = torch.mul(k, 1.0 / 6.0).add_(1.0 / 3.0).floor_()
    k = torch.add(k, periods, alpha=-6.0)  # ((n + 6h) mod 6) - 2
    return torch.addcmul((minimum - chroma).unsqueeze(1), chroma.unsqueeze(1), k.abs_().clamp_(1.0, 2.0))


def _blend_coefficients(params: ViewParams, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Per sample and blend step: factor, grey weight and mean-grey weight, each [B, 6].

    Brightness, contrast and saturation are all factor * x + (1 - factor) * reference, with reference
    0, the mean grey level or the grey image. The six steps are the positions before the hue shift
    (0, 1, 2) and after it (1, 2, 3); a step outside a sample's own side of its hue shift, a hue
    position and an unjittered sample get factor 1, which leaves the sample bit-identical.
    """
    order = params.jitter_order
    hue_position = (order == HUE).to(torch.int32).argmax(dim=1, keepdim=True)  # [B, 1]
    positions = torch.arange(4, device=order.device)
    before, after = positions[None, :3] < hue_position, positions[None, 1:] > hue_position
    active = torch.cat([before, after], dim=1) & params.jitter[:, None]
    by_op = torch.stack(
        [params.brightness, params.contrast, params.saturation, torch.ones_like(params.brightness)], dim=1
    ).to(dtype)
    by_position = by_op.gather(1, order)  # [B, 4]
    ops = torch.cat([order[:, :3], order[:, 1:]], dim=1)
    factor = torch.where(active, torch.cat([by_position[:, :3], by_position[:, 1:]], dim=1), 1.0)
    rest = 1.0 - factor
    return factor, rest * (ops == SATURATION), rest * (ops == CONTRAST)


def _blend_matrices(params: ViewParams, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Each blend step as a per-sample colour matrix [B, 6, 3, 3] and a mean-grey weight [B, 6].

    factor * x + grey_weight * grey(x) is the matrix factor * I + grey_weight * (1 luma^T) applied
    to the pixel's (r, g, b); the contrast term adds mean_weight * mean grey level to every channel.
    """
    factor, grey_weight, mean_weight = _blend_coefficients(params, dtype)
    device = factor.device
    identity = torch.eye(3, device=device, dtype=dtype)
    luma_rows = _channel_constants(LUMA_WEIGHTS, device, dtype).view(1, 1, 1, 3)
    matrices = torch.addcmul(factor[..., None, None] * identity, grey_weight[..., None, None], luma_rows)
    return matrices, mean_weight


def _blend(images: Tensor, matrix: Tensor, mean_weight: Tensor) -> Tensor:
    """clamp(matrix @ pixel + mean_weight * mean grey, 0, 1) per sample: matrix [B, 3, 3], weight [B].

    One batched matrix product for the pixel work; the identity matrix and weight 0 (an inactive
    step) return the images bit-identical. With TF32 matmuls allowed on a GPU the product rounds to
    about 0.25/255, far below what the augmentation changes.
    """
    batch, channels, height, width = images.shape
    pixels = images.reshape(batch, channels, height * width)
    luma = _channel_constants(LUMA_WEIGHTS, images.device, images.dtype).view(3)
    mean_grey = torch.mv(pixels.mean(dim=2), luma)  # [B]: the mean of the grey image
    offset = (mean_weight * mean_grey).view(batch, 1, 1)
    return torch.baddbmm(offset, matrix, pixels).clamp_(0.0, 1.0).view(batch, channels, height, width)


def color_jitter(images: Tensor, params: ViewParams) -> Tensor:
    """ColorJitter with each sample's own factors and its own order of the four operations.

    The hue shift (the costly one) runs once for the whole batch: first the blend steps that precede
    each sample's hue shift, then the shift, then those that follow it; torchvision's clamp to [0, 1]
    after every operation is kept, so results equal torchvision's to float rounding.
    """
    matrices, mean_weight = _blend_matrices(params, images.dtype)
    for step in range(3):
        images = _blend(images, matrices[:, step], mean_weight[:, step])
    images = torch.where(params.jitter.view(-1, 1, 1, 1), adjust_hue(images, params.hue), images)
    for step in range(3, 6):
        images = _blend(images, matrices[:, step], mean_weight[:, step])
    return images


def gaussian_blur(images: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a sigma per sample and reflect padding, as torchvision's GaussianBlur.

    torchvision's kernel is softmax(-(x / sigma)^2) over x = linspace(-(k-1)/(2 sqrt 2), +...), i.e.
    exp(-d^2 / (2 sigma^2)) over pixel offsets d, normalised.
    """
    batch, channels, height, width = images.shape
    offsets = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - (kernel_size - 1) / 2
    kernels = torch.softmax(-(offsets**2) / (2.0 * sigma.to(images.dtype)[:, None] ** 2), dim=1)  # [B, k]
    weights = kernels.repeat_interleave(channels, dim=0)  # one kernel per (sample, channel) group
    pad = kernel_size // 2
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.conv2d(
        F.pad(flat, (pad, pad, 0, 0), mode="reflect"), weights[:, None, None, :], groups=batch * channels
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, pad, pad), mode="reflect"), weights[:, None, :, None], groups=batch * channels
    )
    return flat.reshape(batch, channels, height, width)


def _normalisation(
    mean: Triple, std: Triple, device: torch.device, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(x - mean) / std as x * scale + shift: scale and shift [1, 3, 1, 1], cached per device."""
    scale = _channel_constants((1.0 / std[0], 1.0 / std[1], 1.0 / std[2]), device, dtype)
    shift = _channel_constants((-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]), device, dtype)
    return scale, shift


def normalise(images: Tensor, mean: Triple, std: Triple) -> Tensor:
    """(images - mean) / std per channel, as one multiply-add with constants cached per device."""
    scale, shift = _normalisation(mean, std, images.device, images.dtype)
    return torch.addcmul(shift, images, scale)


def colour_and_normalise(views: Tensor, params: ViewParams, config: AugmentConfig) -> Tensor:
    """Everything after the crop: jitter, grayscale, blur, solarize, normalise; [B, 3, S, S] in [0, 1].

    Shared with the per-image path, which crops each image itself and batches only the colour work.
    Grayscale and, when nothing comes between them, normalisation are per-sample affine colour maps,
    applied as one batched matrix product.
    """
    view = color_jitter(views, params)
    batch, channels, height, width = view.shape
    identity = torch.eye(3, device=view.device, dtype=view.dtype)
    luma_rows = _channel_constants(LUMA_WEIGHTS, view.device, view.dtype).view(1, 1, 3)
    colour_map = torch.where(params.grayscale.view(-1, 1, 1), luma_rows, identity)  # [B, 3, 3]
    if not config.blur and config.solarize_p == 0:
        scale, shift = _normalisation(config.mean, config.std, view.device, view.dtype)
        pixels = view.reshape(batch, channels, height * width)
        normalised = torch.baddbmm(shift.view(1, 3, 1), scale.view(1, 3, 1) * colour_map, pixels)
        return normalised.view(batch, channels, height, width)
    view = torch.bmm(colour_map, view.reshape(batch, channels, height * width)).view(view.shape)
    if config.blur:
        blurred = gaussian_blur(view, params.sigma, blur_kernel_size(config.image_size))
        view = torch.where(params.blur.view(-1, 1, 1, 1), blurred, view)
    if config.solarize_p > 0:
        view = torch.where(params.solarize.view(-1, 1, 1, 1) & (view >= SOLARIZE_THRESHOLD), 1.0 - view, view)
    return normalise(view, config.mean, config.std)


def probe_boxes(
    n: int, height: int, width: int, image_size: int, generator: torch.Generator | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """`transforms.probe_transform`'s crop and flip: boxes [n, 4] and flips [n].

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


class BatchViewAugmenter:
    """Turns a batch of uint8 images [B, 3, H, W] into the training-batch contract, on their device.

    Both views (and the probe view when `probe_view`) come out of one `grid_sample` (2 or 3 crops per
    image), and the colour work runs once over the 2B views: a fixed, small number of kernels per batch
    whatever its size. The probe view's parameters are drawn after the training views', so turning it
    on or off leaves view1 and view2 unchanged.
    """

    def __init__(self, config: AugmentConfig, compile: bool = False, probe_view: bool = True) -> None:
        self.config = config
        self.compile = compile
        self.probe_view = probe_view
        # Eager, the views take under 200 small kernels, so launches rather than pixels set the pace for
        # 32 px images; compiled, the pixel work fuses into a few kernels. Sampling stays eager.
        self._render = torch.compile(render_views, dynamic=False) if compile else render_views
        self._generators: dict[torch.device, torch.Generator] = {}

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers and spawned processes get the settings; they compile and seed their own."""
        return {"config": self.config, "compile": self.compile, "probe_view": self.probe_view}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["compile"], state["probe_view"])  # type: ignore[misc]

    def generator(self, device: torch.device, seed: int) -> torch.Generator:
        """This augmenter's generator on `device`, reseeded; seeding is host-side (no sync on a GPU)."""
        generator = self._generators.get(device)
        if generator is None:
            generator = self._generators[device] = torch.Generator(device=device)
        return generator.manual_seed(seed)

    def views(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """view1, view2, probe view (None unless `probe_view`), each normalised float [B, 3, S, S];
        parameters drawn from `generator`."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"Expected uint8 images of shape [B, 3, H, W], got {images.dtype} {tuple(images.shape)}."
            )
        batch, _, height, width = images.shape
        size = self.config.image_size
        params = sample_view_params(2 * batch, height, width, self.config, generator, images.device)
        boxes, flips = params.boxes.view(2, batch, 4), params.flip.view(2, batch)
        if self.probe_view:
            probe, probe_flip = probe_boxes(batch, height, width, size, generator, images.device)
            boxes, flips = torch.cat([boxes, probe[None]]), torch.cat([flips, probe_flip[None]])
        crops = boxes.shape[0]
        # Rows ordered image by image (view1, view2[, probe]), so one grid [B, crops S, S, 2] serves all.
        boxes, flips = boxes.transpose(0, 1).reshape(crops * batch, 4), flips.t().reshape(crops * batch)
        grid = sampling_grid(boxes, flips, size, height, width).view(batch, crops * size, size, 2)
        return self._render(images, grid, params, self.config)

    def training_batch(
        self, images: Tensor, labels: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """{"view1", "view2"[, "probe_view"]: [B, 3, S, S], "label": [B]}."""
        view1, view2, probe = self.views(images, generator)
        batch = {"view1": view1, "view2": view2, "label": labels}
        if probe is not None:
            batch["probe_view"] = probe
        return batch


def render_views(
    images: Tensor, grid: Tensor, params: ViewParams, config: AugmentConfig
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The pixel work of `BatchViewAugmenter.views`: uint8 [B, 3, H, W] and grid [B, K S, S, 2] in (K = 2
    crops per image, or 3 with the probe's), view1, view2 and the probe view (None when K = 2) out. Zero
    padding is read only by the probe's padded crop; every other box lies inside its image."""
    batch, channels = images.shape[:2]
    size = config.image_size
    crops_per_image = grid.shape[1] // size
    source = images.float().div_(255.0)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    crops = crops.view(batch, channels, crops_per_image, size, size).permute(2, 0, 1, 3, 4).contiguous()
    views = colour_and_normalise(crops[:2].view(2 * batch, channels, size, size), params, config)
    probe = normalise(crops[2], config.mean, config.std) if crops_per_image == 3 else None
    return views[:batch], views[batch:], probe
