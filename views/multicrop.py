"""Multi-crop (Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments", SwAV, Sec. 3.2): small, low-resolution views of each image beside the two large ones.

A small view is a SimCLR view with another output size and crop scale: the same colour, grayscale and
blur draws as the large views (SwAV's and VISSL's multi-crop transforms apply one augmentation to every
crop), so each view path makes them with its own renderer, given `small_view_config`. Their parameters
are drawn after the large views' from the same generator (after the probe view's on the batched path,
before it on the per-image path), so they are seeded as the large views are (on the batched paths per
(run seed, rank, epoch, batch): a resumed run draws what the uninterrupted one drew); on the batched
paths turning them on leaves the large views unchanged. On the batched path for images of any size each
image's small crops are drawn from its own full size, as its large ones are, and all small views of a
batch are resized in one filtered pass (views.filtered_crops).
The training batch then also holds "small_views": [N small views, B, 3, S, S], view-major.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from views.any_size import AnySizeViewAugmenter, ImageLayout
from views.batched import BatchViewAugmenter
from views.config import AugmentConfig
from views.params import sample_view_params

# SwAV's crop scales of its small crops (0.05-0.14 of the area; the large ones take 0.14-1 there, the
# template's --data.min_crop_scale here) and its sizes, 96 px small crops beside 224 px large ones.
SWAV_SMALL_CROP_SCALE = (0.05, 0.14)
SWAV_SMALL_TO_LARGE = 96 / 224
# Default small sizes are multiples of this: SwAV's 96 px is 12 x 8, and a multiple of 8 keeps every
# feature map of a CIFAR-stem ResNet (three stride-2 stages) a whole number of pixels.
SMALL_VIEW_MULTIPLE = 8


def default_small_view_size(image_size: int) -> int:
    """SwAV's ratio, 96 / 224, of the view size, to the nearest multiple of 8: 96 at 224, 16 at 32."""
    multiples = round(image_size * SWAV_SMALL_TO_LARGE / SMALL_VIEW_MULTIPLE)
    return max(1, multiples) * SMALL_VIEW_MULTIPLE


@dataclass(frozen=True)
class MultiCrop:
    """How many small views each image gets, their side and their crop scale (fractions of the area)."""

    count: int
    size: int
    crop_scale: tuple[float, float] = SWAV_SMALL_CROP_SCALE

    @classmethod
    def of(
        cls, count: int, size: int | None, crop_scale: tuple[float, float], image_size: int
    ) -> MultiCrop | None:
        """The datamodule's `--data.num_small_views`, `small_view_size` and `small_crop_scale`, checked;
        None without small views."""
        if count < 0:
            raise ValueError(f"--data.num_small_views {count} must be >= 0 (0: the two views of SimCLR).")
        if size is not None and size < 1:
            raise ValueError(f"--data.small_view_size {size} must be a positive number of pixels.")
        low, high = (float(value) for value in crop_scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"--data.small_crop_scale {list(crop_scale)} must be [low, high] with 0 < low <= high <= 1 "
                f"(fractions of the image's area; SwAV: {list(SWAV_SMALL_CROP_SCALE)})."
            )
        if count == 0:
            return None
        if size is not None and size > image_size:
            raise ValueError(
                f"--data.small_view_size {size} is larger than the {image_size} px large views "
                f"(--data.image_size); small views are the smaller ones (SwAV: 96 beside 224): use at most "
                f"{image_size}, or leave it out for {default_small_view_size(image_size)}."
            )
        return cls(count, size if size is not None else default_small_view_size(image_size), (low, high))

    def small_view_config(self, large: AugmentConfig) -> AugmentConfig:
        """The large views' settings at the small size and crop scale, blur decided as for the large."""
        return replace(large, image_size=self.size, crop_scale=self.crop_scale)


def batched_small_views(
    augmenter: BatchViewAugmenter, images: Tensor, count: int, generator: torch.Generator | None
) -> Tensor:
    """`count` small views [count, B, 3, S, S] of uint8 images [B, 3, H, W], two per renderer call."""
    views: list[Tensor] = []
    while len(views) < count:
        first, second, _ = augmenter.views(images, generator)
        views += [first, second]
    return torch.stack(views[:count])


class MultiCropBatchAugmenter(BatchViewAugmenter):
    """The batched path's training batch with small views: the large views (and the probe view) as
    `BatchViewAugmenter` makes them, then `multi_crop.count` small views from the same generator."""

    def __init__(
        self, config: AugmentConfig, multi_crop: MultiCrop, compile: bool = False, probe_view: bool = True
    ) -> None:
        super().__init__(config, compile, probe_view)
        self.multi_crop = multi_crop
        self.small = BatchViewAugmenter(multi_crop.small_view_config(config), compile, probe_view=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "multi_crop": self.multi_crop}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["multi_crop"], state["compile"], state["probe_view"])  # type: ignore[misc]

    def training_batch(
        self, images: Tensor, labels: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """{"view1", "view2"[, "probe_view"]: [B, 3, S, S], "small_views": [N, B, 3, s, s], "label": [B]}."""
        batch = super().training_batch(images, labels, generator)
        batch["small_views"] = batched_small_views(self.small, images, self.multi_crop.count, generator)
        return batch


class AnySizeMultiCropBatchAugmenter(AnySizeViewAugmenter):
    """The batched path for images of any size with small views: the large views (and the probe view)
    as `AnySizeViewAugmenter` makes them, then `multi_crop.count` small views of the same packed images,
    their parameters drawn after the large views' from the same generator."""

    def __init__(
        self, config: AugmentConfig, multi_crop: MultiCrop, probe_view: bool = False, compile: bool = False
    ) -> None:
        super().__init__(config, probe_view, compile)
        self.multi_crop = multi_crop
        self.small_config = multi_crop.small_view_config(config)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "multi_crop": self.multi_crop}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["multi_crop"], state["probe_view"], state["compile"])  # type: ignore[misc]

    def training_batch_of(
        self, layout: ImageLayout, labels: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """{"view1", "view2"[, "probe_view"]: [B, 3, S, S], "small_views": [N, B, 3, s, s], "label": [B]}."""
        batch = super().training_batch_of(layout, labels, generator)
        count, images, config = self.multi_crop.count, layout.count, self.small_config
        params = sample_view_params(
            count * images,
            layout.full_height.repeat(count),
            layout.full_width.repeat(count),
            config,
            generator,
            layout.full_height.device,
        )
        crops = layout.crops(params.boxes, params.flip, config.image_size)
        small = self._colour(crops, params, config)
        batch["small_views"] = small.view(count, images, *small.shape[1:])
        return batch


def batch_augmenter(
    config: AugmentConfig, multi_crop: MultiCrop | None, compile: bool, probe_view: bool
) -> BatchViewAugmenter:
    """The fixed-size batched path's augmenter, with small views where `multi_crop` asks for them."""
    if multi_crop is None:
        return BatchViewAugmenter(config, compile, probe_view)
    return MultiCropBatchAugmenter(config, multi_crop, compile, probe_view)


def any_size_augmenter(
    config: AugmentConfig, multi_crop: MultiCrop | None, probe_view: bool, compile: bool
) -> AnySizeViewAugmenter:
    """The any-size batched path's augmenter, with small views where `multi_crop` asks for them."""
    if multi_crop is None:
        return AnySizeViewAugmenter(config, probe_view, compile)
    return AnySizeMultiCropBatchAugmenter(config, multi_crop, probe_view, compile)
