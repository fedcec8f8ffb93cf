"""The settings of a SimCLR view, shared by both ways of making views (batched and per image).

One `AugmentConfig` and one blur rule feed the batched renderer and the per-image renderer, so the two
cannot drift apart in what they draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Above this size images are "large" and the probe uses RandomResizedCrop instead of CIFAR-style padding.
SMALL_IMAGE_MAX_SIZE = 64
# SimCLR only blurs at resolutions where blur does not erase the little detail there is (paper, App. B.9).
BLUR_MIN_IMAGE_SIZE = 96
# torchvision's RandomResizedCrop defaults and its number of rejection-sampling attempts.
DEFAULT_CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
LUMA_WEIGHTS = (0.2989, 0.587, 0.114)
# Order of the colour-jitter operations (torchvision's fn_idx order), in both renderers.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3

Triple = tuple[float, float, float]


def blur_kernel_size(image_size: int) -> int:
    """About 10% of the image side as in the paper; Gaussian kernels must be odd."""
    kernel_size = max(3, int(0.1 * image_size))
    return kernel_size if kernel_size % 2 == 1 else kernel_size + 1


def uses_blur(image_size: int, blur: bool | None) -> bool:
    """blur=None follows the paper: blur only from BLUR_MIN_IMAGE_SIZE px; True/False force it."""
    return image_size >= BLUR_MIN_IMAGE_SIZE if blur is None else blur


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
        """The same settings, with the same blur rule, as the per-image views (`per_image.PilSimCLRView`)."""
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
