"""SimCLR views computed on the accelerator, for a whole batch at once, from uint8 images.

With PIL or tensor transforms in DataLoader workers the CPU sets the pace for small images: each view
is a dozen tiny per-image operations. Here every sample still draws its own parameters, with the
distributions of the CPU pipeline (torchvision v2 `RandomResizedCrop`, `RandomHorizontalFlip`,
`RandomApply(ColorJitter, p)`, `RandomGrayscale`, `RandomApply(GaussianBlur, p)`), but each operation
is one batched tensor call, so the cost per view is a few memory passes on the GPU. Everything is
plain torch (no CUDA-only API and no host synchronisation), so the same code runs on CPU in tests.

Known differences from the CPU pipeline, none of which changes a parameter distribution: the colour
operations run in float instead of uint8 (no rounding between them), and crops are resized by one
bilinear `grid_sample` without antialiasing, which only matters when a crop is larger than the output
(e.g. a 96 px image trained at 64 px; never for CIFAR at 32 px or STL-10 at 96 px).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
        """The same settings, with the same blur rule, as `transforms.simclr_view_transform`."""
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


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def _central_crop_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback when no attempt fits: the largest central crop with an allowed ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return int(round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, int(round(height * max(ratio)))
    return height, width


def sample_resized_crops(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """RandomResizedCrop.make_params for n samples at once: all attempts drawn together, first valid kept.

    Same rejection sampling as torchvision (area fraction uniform in `scale`, log aspect ratio uniform,
    rounded sides, CROP_ATTEMPTS tries, then the central fallback), without a Python loop or a sync.
    """
    device = torch.device(device)
    area = height * width
    target_area = area * (
        scale[0] + (scale[1] - scale[0]) * torch.rand(n, CROP_ATTEMPTS, generator=generator, device=device)
    )
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        log_low + (log_high - log_low) * torch.rand(n, CROP_ATTEMPTS, generator=generator, device=device)
    )
    widths = torch.round(torch.sqrt(target_area * aspect))
    heights = torch.round(torch.sqrt(target_area / aspect))
    valid = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first_valid = valid.to(torch.int32).argmax(dim=1, keepdim=True)  # the first maximum: the first valid try
    found = valid.any(dim=1)
    fallback_h, fallback_w = _central_crop_size(height, width, ratio)
    crop_h = torch.where(found, heights.gather(1, first_valid).squeeze(1), float(fallback_h))
    crop_w = torch.where(found, widths.gather(1, first_valid).squeeze(1), float(fallback_w))
    # randint(0, side - crop + 1): every position is equally likely.
    top = torch.floor(torch.rand(n, generator=generator, device=device) * (height - crop_h + 1))
    left = torch.floor(torch.rand(n, generator=generator, device=device) * (width - crop_w + 1))
    top = torch.where(found, top, float((height - fallback_h) // 2))
    left = torch.where(found, left, float((width - fallback_w) // 2))
    return torch.stack([top, left, crop_h, crop_w], dim=1)


def sample_view_params(
    n: int,
    height: int,
    width: int,
    config: AugmentConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> ViewParams:
    """Independent parameters for each of n samples, drawn as the CPU pipeline draws them per image."""
    device = torch.device(device)
    (b_low, b_high), (c_low, c_high), (s_low, s_high), hue_bound = config.jitter_ranges
    return ViewParams(
        boxes=sample_resized_crops(n, height, width, config.crop_scale, config.crop_ratio, generator, device),
        flip=_bernoulli(n, config.flip_p, generator, device),
        jitter=_bernoulli(n, config.jitter_p, generator, device),
        brightness=_uniform(n, b_low, b_high, generator, device),
        contrast=_uniform(n, c_low, c_high, generator, device),
        saturation=_uniform(n, s_low, s_high, generator, device),
        hue=_uniform(n, -hue_bound, hue_bound, generator, device),
        # argsort of i.i.d. uniforms: a uniformly random permutation per row (ColorJitter's randperm(4)).
        jitter_order=torch.rand(n, 4, generator=generator, device=device).argsort(dim=1),
        grayscale=_bernoulli(n, config.grayscale_p, generator, device),
        blur=_bernoulli(n, config.blur_p if config.blur else 0.0, generator, device),
        sigma=_uniform(n, config.blur_sigma[0], config.blur_sigma[1], generator, device),
        solarize=_bernoulli(n, config.solarize_p, generator, device),
    )


def resample(images: Tensor, boxes: Tensor, flip: Tensor, size: int, padding_mode: str) -> Tensor:
    """Crops each image to its box and resizes it to size x size (bilinear), mirrored where `flip`.

    One affine `grid_sample` for the batch. Output pixel c of a box starting at `left` with width w
    samples source position left + (c + 0.5) * w / size - 0.5, the pixel-centre convention of
    torchvision's resize, so a full-image box at the native size reproduces the image exactly.
    """
    _, _, height, width = images.shape
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size
    top, left, box_h, box_w = (boxes[:, k : k + 1].to(images.dtype) for k in range(4))
    grid_x = (left + steps * box_w) * (2.0 / width) - 1.0  # [B, size], normalised coordinates
    grid_y = (top + steps * box_h) * (2.0 / height) - 1.0
    grid_x = torch.where(flip[:, None], grid_x.flip(1), grid_x)
    grid = torch.stack(
        [grid_x[:, None, :].expand(-1, size, -1), grid_y[:, :, None].expand(-1, -1, size)], dim=-1
    )
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    r, g, b = images.unbind(dim=1)
    return (LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b).unsqueeze(1)


def _rgb_to_hsv(images: Tensor) -> Tensor:
    """torchvision's conversion (Pillow's algorithm), batched; h, s, v in [0, 1]."""
    r, g, b = images.unbind(dim=1)
    maxc, _ = images.max(dim=1)
    minc, _ = images.min(dim=1)
    grey = maxc == minc
    chroma = maxc - minc
    ones = torch.ones_like(maxc)
    saturation = chroma / torch.where(grey, ones, maxc)
    chroma_safe = torch.where(grey, ones, chroma)
    rc, gc, bc = (maxc - r) / chroma_safe, (maxc - g) / chroma_safe, (maxc - b) / chroma_safe
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_r & ~is_g
    hue = torch.where(is_r, bc - gc, torch.zeros_like(maxc))
    hue = hue + torch.where(is_g, 2.0 + rc - bc, torch.zeros_like(maxc))
    hue = hue + torch.where(is_b, 4.0 + gc - rc, torch.zeros_like(maxc))
    hue = torch.fmod(hue / 6.0 + 1.0, 1.0)
    return torch.stack([hue, saturation, maxc], dim=1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """The closed form v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6 for n = 5, 3, 1 (R, G, B)."""
    hue, saturation, value = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=hsv.device, dtype=hsv.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * hue, 6.0)
    return value - value * saturation * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(images: Tensor, hue_factor: Tensor) -> Tensor:
    hsv = _rgb_to_hsv(images)
    shifted_hue = torch.remainder(hsv[:, 0] + hue_factor[:, None, None], 1.0)
    return _hsv_to_rgb(torch.stack([shifted_hue, hsv[:, 1], hsv[:, 2]], dim=1))


def _blend_step(images: Tensor, op: Tensor, params: ViewParams, active: Tensor) -> Tensor:
    """Brightness, contrast or saturation (whichever `op` names per sample) where `active`, else identity.

    All three are blends factor * x + (1 - factor) * reference, with reference 0, the mean grey level
    or the grey image, so one blend serves the batch whatever each sample's operation; factor 1 (hue
    samples, inactive samples) leaves a sample bit-identical.
    """
    gray = rgb_to_grayscale(images)
    op4 = op.view(-1, 1, 1, 1)
    mean_gray = gray.mean(dim=(1, 2, 3), keepdim=True).expand_as(gray)
    reference = torch.where(op4 == BRIGHTNESS, 0.0, torch.where(op4 == CONTRAST, mean_gray, gray))
    factor = torch.where(
        op == BRIGHTNESS,
        params.brightness,
        torch.where(op == CONTRAST, params.contrast, torch.where(op == SATURATION, params.saturation, 1.0)),
    )
    factor = torch.where(active, factor, 1.0).view(-1, 1, 1, 1).to(images.dtype)
    return (factor * images + (1.0 - factor) * reference).clamp(0.0, 1.0)


def color_jitter(images: Tensor, params: ViewParams) -> Tensor:
    """ColorJitter with each sample's own factors and its own order of the four operations.

    The hue shift (an HSV round trip, the costly one) runs once for the whole batch: first every
    sample's operations that precede its hue shift, then the shift, then those that follow it.
    """
    hue_position = (params.jitter_order == HUE).int().argmax(dim=1)
    for position in range(3):  # before hue; hue is at position 3 at the latest
        active = params.jitter & (position < hue_position)
        images = _blend_step(images, params.jitter_order[:, position], params, active)
    images = torch.where(params.jitter.view(-1, 1, 1, 1), adjust_hue(images, params.hue), images)
    for position in range(1, 4):  # after hue; hue is at position 0 at the earliest
        active = params.jitter & (position > hue_position)
        images = _blend_step(images, params.jitter_order[:, position], params, active)
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


def normalise(images: Tensor, mean: Triple, std: Triple) -> Tensor:
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def render_view(images: Tensor, params: ViewParams, config: AugmentConfig) -> Tensor:
    """One normalised float view [B, 3, S, S] of float images in [0, 1], in the CPU pipeline's order."""
    view = resample(images, params.boxes, params.flip, config.image_size, padding_mode="border")
    return colour_and_normalise(view, params, config)


def colour_and_normalise(views: Tensor, params: ViewParams, config: AugmentConfig) -> Tensor:
    """Everything after the crop: jitter, grayscale, blur, solarize, normalise; [B, 3, S, S] in [0, 1].

    Shared with the per-image path, which crops each image itself and batches only the colour work.
    """
    view = color_jitter(views, params)
    view = torch.where(params.grayscale.view(-1, 1, 1, 1), rgb_to_grayscale(view).expand_as(view), view)
    if config.blur:
        blurred = gaussian_blur(view, params.sigma, blur_kernel_size(config.image_size))
        view = torch.where(params.blur.view(-1, 1, 1, 1), blurred, view)
    if config.solarize_p > 0:
        view = torch.where(params.solarize.view(-1, 1, 1, 1) & (view >= SOLARIZE_THRESHOLD), 1.0 - view, view)
    return normalise(view, config.mean, config.std)


def probe_boxes(
    n: int, height: int, width: int, image_size: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """`transforms.probe_transform`'s crop: padded random crop for small images, RandomResizedCrop otherwise.

    A RandomCrop(size, padding=size // 8) after resizing to size x size is a box of the whole image
    shifted by a whole number of output pixels in [-pad, pad]; the zero padding comes from grid_sample.
    """
    if image_size > SMALL_IMAGE_MAX_SIZE:
        return sample_resized_crops(n, height, width, (0.08, 1.0), DEFAULT_CROP_RATIO, generator, device)
    pad = image_size // 8
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=device).to(torch.float32)
    top = shift[:, 0] * (height / image_size)
    left = shift[:, 1] * (width / image_size)
    return torch.stack([top, left, torch.full_like(top, height), torch.full_like(top, width)], dim=1)


class BatchViewAugmenter:
    """Turns a batch of uint8 images [B, 3, H, W] into the training-batch contract, on their device."""

    def __init__(self, config: AugmentConfig, compile: bool = False) -> None:
        self.config = config
        # Eager, each view is a few hundred small kernels, so launches rather than pixels set the pace
        # for 32 px images; compiled, the pixel work fuses into a few kernels. Sampling stays eager.
        self._render = torch.compile(render_view, dynamic=False) if compile else render_view

    def views(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"Expected uint8 images of shape [B, 3, H, W], got {images.dtype} {tuple(images.shape)}."
            )
        batch, _, height, width = images.shape
        source = images.float().div_(255.0)
        view1, view2 = (
            self._render(
                source,
                sample_view_params(batch, height, width, self.config, generator, images.device),
                self.config,
            )
            for _ in range(2)
        )
        probe = resample(
            source,
            probe_boxes(batch, height, width, self.config.image_size, generator, images.device),
            _bernoulli(batch, 0.5, generator, images.device),
            self.config.image_size,
            padding_mode="zeros" if self.config.image_size <= SMALL_IMAGE_MAX_SIZE else "border",
        )
        return view1, view2, normalise(probe, self.config.mean, self.config.std)

    def training_batch(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        view1, view2, probe = self.views(images)
        return {"view1": view1, "view2": view2, "probe_view": probe, "label": labels}
