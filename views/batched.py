"""SimCLR views for a whole batch at once, from uint8 images: the batched view path.

A per-image pipeline spends its time in a dozen tiny operations per view. Here every sample still
draws its own parameters (`views.params`), with the distributions of the per-image pipeline, but each
operation is one batched tensor call: one `grid_sample` crops both views and the probe view of every
image (`views.resample`), and the colour work runs once over both views (`views.colour`). Eager, a
512-image CIFAR batch takes under 200 kernel launches (tests/views/test_batched.py counts them).
Everything is plain torch with no host synchronisation and no per-batch host-to-device copy, so it runs
on the accelerator after the transfer and, on CPU-only runs, in DataLoader workers.

Known differences from the per-image pipeline, none of which changes a parameter distribution: the
colour operations run in float instead of uint8 (no rounding between them), and crops are resized
bilinearly without antialiasing (see `views.resample`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from views.colour import colour_and_normalise, normalise
from views.config import AugmentConfig
from views.params import DeviceGenerators, ViewParams, probe_boxes, sample_view_params
from views.resample import sampling_grid


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
        self._generators = DeviceGenerators()

    def __getstate__(self) -> dict[str, Any]:
        """DataLoader workers and spawned processes get the settings; they compile and seed their own."""
        return {"config": self.config, "compile": self.compile, "probe_view": self.probe_view}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["compile"], state["probe_view"])  # type: ignore[misc]

    def generator(self, device: torch.device, seed: int) -> torch.Generator:
        """This augmenter's generator on `device`, reseeded; seeding is host-side (no sync on a GPU)."""
        return self._generators.seeded(device, seed)

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
