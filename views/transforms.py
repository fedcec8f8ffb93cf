"""The evaluation and weak (probe) transforms: torchvision v2 pipelines on one image at a time.

The SimCLR training views themselves live in `views.per_image` (one image at a time, PIL) and
`views.batched` (a batch at a time, tensors). The transforms here convert to a uint8 tensor first and
only the last step makes the normalised float tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from views.config import SMALL_IMAGE_MAX_SIZE

# Resizing to size / 0.875 before the centre crop is the standard ImageNet evaluation protocol.
EVAL_CENTER_CROP_FRACTION = 0.875

ImageTransform = Callable[[Any], torch.Tensor]


def _to_normalised_float(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.ToPureTensor(),
    ]


def _fit_to_square(image_size: int, native_size: int | None) -> list[v2.Transform]:
    """Brings any input to image_size x image_size without distortion; nothing when it already is."""
    if native_size == image_size:
        return []
    return [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]


def probe_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], native_size: int | None
) -> v2.Compose:
    """Weak augmentation for the online linear probe, so it sees roughly the evaluation distribution.

    `native_size` is the side of every (square) image of a fixed-size dataset, or None when sizes vary.
    """
    if image_size <= SMALL_IMAGE_MAX_SIZE:
        crop: list[v2.Transform] = [
            *_fit_to_square(image_size, native_size),
            v2.RandomCrop(image_size, padding=image_size // 8),
        ]
    else:
        crop = [v2.RandomResizedCrop(image_size, antialias=True)]
    return v2.Compose([v2.ToImage(), *crop, v2.RandomHorizontalFlip(p=0.5), *_to_normalised_float(mean, std)])


def eval_transform(
    image_size: int, mean: Sequence[float], std: Sequence[float], native_size: int | None
) -> v2.Compose:
    """Deterministic evaluation view.

    Fixed-size datasets (`native_size` given) keep every pixel and are only resized when image_size
    differs; image folders of arbitrary sizes (`native_size=None`) use Resize(size/0.875) + CenterCrop.
    """
    if native_size is None:
        geometry: list[v2.Transform] = [
            v2.Resize(round(image_size / EVAL_CENTER_CROP_FRACTION), antialias=True),
            v2.CenterCrop(image_size),
        ]
    elif native_size != image_size:
        geometry = [v2.Resize((image_size, image_size), antialias=True)]
    else:
        geometry = []
    return v2.Compose([v2.ToImage(), *geometry, *_to_normalised_float(mean, std)])
