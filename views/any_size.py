"""SimCLR views for a whole batch of images of any sizes at once: the batched path for image folders.

The images arrive decoded, each at its own size ([3, H_n, W_n] uint8, a list), on the device where the
views are made. Every view draws its parameters from its own image's full size (`views.params` with
per-sample sides), with the distributions of the per-image path; all crops of the batch (both views,
and the probe view) are then resized in one filtered pass (`views.filtered_crops`, antialiased as
torchvision's crop-then-resize), and the colour work runs once over both views (`views.colour`), as on
the batched path for images of one size. The kernels per batch depend on the view size and the widest
image, not on the number of images (tests/views/test_any_size.py counts them).

An image decoded smaller than its full size (over `--data.max_decoded_side`, see views.jpeg) keeps its
full-size boxes, scaled onto the pixels it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from views.colour import colour_and_normalise, normalise
from views.config import SMALL_IMAGE_MAX_SIZE, AugmentConfig
from views.filtered_crops import PackedImages, filtered_crops, image_geometry, pack_images
from views.params import DeviceGenerators, central_squares, probe_boxes, sample_view_params


class AnySizeViewAugmenter:
    """Decoded images of any sizes -> {"view1", "view2"[, "probe_view"], "label"}, on their device.

    The probe view's parameters are drawn after the training views', so turning it on or off leaves
    view1 and view2 unchanged, as on the fixed-size batched path.
    """

    def __init__(self, config: AugmentConfig, probe_view: bool = False, compile: bool = False) -> None:
        self.config = config
        self.probe_view = probe_view
        self.compile = compile
        # The colour work has the same shapes every batch ([2B, 3, S, S]), so it compiles once, as on the
        # fixed-size path; the filter's shapes follow the images of each batch and stay eager.
        self._colour = torch.compile(colour_and_normalise, dynamic=False) if compile else colour_and_normalise
        self._generators = DeviceGenerators()

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers and spawned processes get the settings; they compile and seed their own."""
        return {"config": self.config, "probe_view": self.probe_view, "compile": self.compile}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["probe_view"], state["compile"])  # type: ignore[misc]

    def generator(self, device: torch.device, seed: int) -> torch.Generator:
        """This augmenter's generator on `device`, reseeded; seeding is host-side (no sync on a GPU)."""
        return self._generators.seeded(device, seed)

    def layout(self, images: Sequence[Tensor], full_sizes: Sequence[tuple[int, int]]) -> ImageLayout:
        """uint8 `images` [3, H_n, W_n] whose full (height, width) are `full_sizes`, packed for cropping."""
        geometry = image_geometry(images)
        table = [[*placed, *full] for placed, full in zip(geometry, full_sizes, strict=True)]
        sides = _to_device(table, images[0].device)  # [B, 5]: offset, decoded and full height, width
        full_height, full_width = sides[:, 3].float(), sides[:, 4].float()
        # Full-size boxes onto the decoded pixels: a factor of 1 unless the image was decoded smaller.
        scale = torch.stack([sides[:, 1] / full_height, sides[:, 2] / full_width], dim=1).repeat(1, 2)
        return ImageLayout(pack_images(images, sides[:, :3]), sides[:, 1:3], full_height, full_width, scale)

    def views(
        self,
        images: Sequence[Tensor],
        full_sizes: Sequence[tuple[int, int]],
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """view1, view2 and the probe view (None unless `probe_view`), normalised float [B, 3, S, S], of
        uint8 `images` [3, H_n, W_n] whose full (height, width) are `full_sizes`."""
        return self.views_of(self.layout(images, full_sizes), generator)

    def views_of(
        self, layout: ImageLayout, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """`views` of images already laid out."""
        count, size = layout.count, self.config.image_size
        device = layout.full_height.device
        full_height, full_width = layout.full_height, layout.full_width
        params = sample_view_params(
            2 * count, full_height.repeat(2), full_width.repeat(2), self.config, generator, device
        )
        boxes, flips, regions = params.boxes, params.flip, None
        if self.probe_view:
            probe, probe_flip = probe_boxes(count, full_height, full_width, size, generator, device)
            boxes, flips = torch.cat([boxes, probe]), torch.cat([flips, probe_flip])
            if size <= SMALL_IMAGE_MAX_SIZE:
                # The padded crop of the small-image probe reads its central square, zeros around it.
                whole = torch.stack([torch.zeros_like(full_height), torch.zeros_like(full_width)], dim=1)
                whole = torch.cat([whole, layout.decoded.float()], dim=1)
                square = central_squares(full_height, full_width) * layout.scale
                regions = torch.cat([whole, whole, square.round()])
        crops = layout.crops(boxes, flips, size, regions)
        views = self._colour(crops[: 2 * count], params, self.config)
        probe_view = (
            normalise(crops[2 * count :], self.config.mean, self.config.std) if self.probe_view else None
        )
        return views[:count], views[count:], probe_view

    def training_batch(
        self,
        images: Sequence[Tensor],
        full_sizes: Sequence[tuple[int, int]],
        labels: Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """{"view1", "view2"[, "probe_view"]: [B, 3, S, S], "label": [B]}."""
        return self.training_batch_of(self.layout(images, full_sizes), labels, generator)

    def training_batch_of(
        self, layout: ImageLayout, labels: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """`training_batch` of images already laid out (subclasses add views of the same layout)."""
        view1, view2, probe = self.views_of(layout, generator)
        batch = {"view1": view1, "view2": view2, "label": labels}
        if probe is not None:
            batch["probe_view"] = probe
        return batch


@dataclass(frozen=True)
class ImageLayout:
    """A batch's images packed for `filtered_crops`, with their decoded and full sizes."""

    packed: PackedImages
    decoded: Tensor  # [B, 2] long: (height, width) of the pixels decoded
    full_height: Tensor  # [B] float: at full resolution, where the crop boxes are drawn
    full_width: Tensor  # [B] float
    scale: Tensor  # [B, 4]: full-size boxes (top, left, height, width) onto the decoded pixels

    @property
    def count(self) -> int:
        return self.full_height.shape[0]

    def crops(self, boxes: Tensor, flips: Tensor, size: int, regions: Tensor | None = None) -> Tensor:
        """[V, 3, size, size] in [0, 1] of full-size `boxes` [V, 4], k views per image, view-major."""
        crops_per_image = boxes.shape[0] // self.count
        image_index = torch.arange(self.count, device=boxes.device).repeat(crops_per_image)
        scaled = boxes * self.scale.repeat(crops_per_image, 1)
        return filtered_crops(self.packed, image_index, scaled, flips, size, regions)


def _to_device(rows: list[list[int]], device: torch.device) -> Tensor:
    """A small host table on `device`: from pinned memory without blocking on a GPU, as is on the CPU."""
    table = torch.tensor(rows, dtype=torch.long, pin_memory=device.type == "cuda")
    return table.to(device, non_blocking=True)
