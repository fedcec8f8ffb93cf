"""The per-image view path as a dataset: each item an image's uint8 views, each batch normalised at once.

The draws come from one numpy generator per process, seeded from torch's seed of that process (which
torch, and Lightning's `seed_everything(workers=True)`, make distinct per DataLoader worker) and the
global rank, so workers and ranks draw independently and a run is reproducible from its seed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from views import pixel_kernels
from views.config import Triple
from views.crop_decode import ImageFile, scale_boxes
from views.per_image import PilProbeView, PilSimCLRView

VIEW_KEYS = ("view1", "view2", "probe_view")
SMALL_VIEWS = "small_views"


class ProcessGenerator:
    """A numpy generator per process, made on first use in that process (main or DataLoader worker).

    Seeded from torch.initial_seed() of the process, which torch sets to base_seed + worker_id in each
    worker (base_seed drawn from the seeded main process), and from the global rank, which torch's
    seed does not include when every rank was seeded alike. Made lazily because the object is copied
    into each worker; a generator made before that would repeat the same draws in every worker.
    """

    def __init__(self, rank: int = 0) -> None:
        self.rank = rank
        self._pid: int | None = None
        self._generator: np.random.Generator | None = None

    def __call__(self) -> np.random.Generator:
        if self._pid != os.getpid() or self._generator is None:
            self._generator = np.random.default_rng([torch.initial_seed(), self.rank])
            self._pid = os.getpid()
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        return {"rank": self.rank, "_pid": None, "_generator": None}


class NormaliseViews:
    """The training collate: each view normalised straight into the float batch, in one pass per view.

    Output views are float32 [B, 3, S, S], (x / 255 - mean) / std, as ToDtype(scale) + Normalize. The
    uint8 [S, S, 3] views are read once and transposed as they are written (a compiled loop): stacking
    them first and normalising the batch measured 3 to 5 times slower at 224 px.
    """

    def __init__(self, mean: Triple, std: Triple) -> None:
        self.scale = np.array([1.0 / (255.0 * s) for s in std], dtype=np.float32)
        self.shift = np.array([-m / s for m, s in zip(mean, std, strict=True)], dtype=np.float32)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Tensor]:
        keys = [key for key in (*VIEW_KEYS, SMALL_VIEWS) if key in samples[0]]
        batch = default_collate([{k: v for k, v in sample.items() if k not in keys} for sample in samples])
        for key in keys:
            if key == SMALL_VIEWS:  # [N, s, s, 3] per item -> [N, B, 3, s, s], view-major (views.multicrop)
                count, height, width, _ = samples[0][key].shape
                out = torch.empty((count, len(samples), 3, height, width), dtype=torch.float32)
                into = out.numpy()
                for index, sample in enumerate(samples):
                    for view, pixels in enumerate(sample[key].numpy()):
                        pixel_kernels.normalise_into(pixels, into[view, index], self.scale, self.shift)
                batch[key] = out
                continue
            height, width, _ = samples[0][key].shape
            out = torch.empty((len(samples), 3, height, width), dtype=torch.float32)
            into = out.numpy()
            for index, sample in enumerate(samples):
                pixel_kernels.normalise_into(sample[key].numpy(), into[index], self.scale, self.shift)
            batch[key] = out
        return batch


class SimCLRTrainingDataset(Dataset):
    """Turns a (PIL image, label) dataset into the SimCLR batch contract; use with its `collate`.

    Items hold uint8 views [S, S, 3]; `collate` (a `NormaliseViews`) makes the normalised float batch
    {"view1", "view2"[, "probe_view"]: [B, 3, S, S], "label": [B] int64}, the probe view only when a
    `probe_view` is given (it costs a third view per image and only the weak-view probe reads it).

    With `files` and `labels` (what `images` would load, listed without loading), each item reads its
    file itself (views/crop_decode.py): JPEGs through libjpeg-turbo, at a reduced DCT scale when both
    crops allow it; the probe view, when made, is cut from the full-size image.
    """

    def __init__(
        self,
        images: Dataset,
        view: PilSimCLRView,
        probe_view: PilProbeView | None = None,
        rank: int = 0,
        files: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        small_views: tuple[PilSimCLRView, int] | None = None,
    ) -> None:
        """`small_views`: (the small view, how many per image), drawn after the two large views and before
        the probe view (views.multicrop); items then hold "small_views" [N, s, s, 3], batches
        [N, B, 3, s, s]."""
        if (files is None) != (labels is None):
            raise ValueError("files and labels go together: the labels of the listed files, or neither.")
        self.images = images
        self.view = view
        self.probe_view = probe_view
        self.files = files
        self.labels = labels
        self.small_views = small_views
        self.collate = NormaliseViews(view.config.mean, view.config.std)
        self.generator = ProcessGenerator(rank)

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        rng = self.generator()
        if self.files is not None and self.labels is not None:
            item = self._views_of_file(self.files[index], rng)
            item["label"] = int(self.labels[index])
            return item
        image, label = self.images[index]
        if image.mode != "RGB":
            image = image.convert("RGB")
        item = {"view1": self.view(image, rng), "view2": self.view(image, rng)}
        if self.small_views is not None:
            small_view, count = self.small_views
            item[SMALL_VIEWS] = torch.stack([small_view(image, rng) for _ in range(count)])
        if self.probe_view is not None:
            item["probe_view"] = self.probe_view(image, rng)
        item["label"] = int(label)
        return item

    def _views_of_file(self, path: str, rng: np.random.Generator) -> dict[str, Tensor | int]:
        return views_of_file(ImageFile.open(path), self.view, self.probe_view, rng, self.small_views)


def views_of_file(
    source: ImageFile,
    view: PilSimCLRView,
    probe_view: PilProbeView | None,
    rng: np.random.Generator,
    small_views: tuple[PilSimCLRView, int] | None = None,
) -> dict[str, Tensor | int]:
    """Both views (and the small views of multi-crop) drawn from the file's header size, then one decode
    at the scale they all allow."""
    draws = [view.draw(rng, *source.size) for _ in range(2)]
    boxes = [draw.box for draw in draws]
    reduction = 1 if probe_view is not None else source.reduction_for(boxes, view.config.image_size)
    small_view, small_draws = None, []
    if small_views is not None:  # drawn before the decode, whose scale they must allow too
        small_view, count = small_views
        small_draws = [small_view.draw(rng, *source.size) for _ in range(count)]
        small_boxes = [draw.box for draw in small_draws]
        reduction = min(reduction, source.reduction_for(small_boxes, small_view.config.image_size))
    decoded = source.decode(reduction)
    scaled = scale_boxes(boxes + [draw.box for draw in small_draws], source.size, decoded)
    views = [view.render(decoded, replace(d, box=b)) for d, b in zip(draws, scaled[:2], strict=True)]
    item: dict[str, Tensor | int] = {"view1": views[0], "view2": views[1]}
    if small_view is not None:
        pairs = zip(small_draws, scaled[2:], strict=True)
        item[SMALL_VIEWS] = torch.stack([small_view.render(decoded, replace(d, box=b)) for d, b in pairs])
    if probe_view is not None:
        pixels = decoded.permute(1, 2, 0).numpy()
        item["probe_view"] = probe_view(Image.fromarray(pixels), rng)
    return item
