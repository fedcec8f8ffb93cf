"""The per-image view path as a dataset: each item an image's uint8 views, each batch normalised at once.

The draws come from one numpy generator per process, seeded from torch's seed of that process (which
torch, and Lightning's `seed_everything(workers=True)`, make distinct per DataLoader worker) and the
global rank, so workers and ranks draw independently and a run is reproducible from its seed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from views.config import Triple
from views.per_image import PilProbeView, PilSimCLRView

VIEW_KEYS = ("view1", "view2", "probe_view")


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
    """The training collate: stacks the uint8 views and normalises each key in one pass over the batch.

    Output views are float32 [B, 3, S, S], (x / 255 - mean) / std, as ToDtype(scale) + Normalize.
    """

    def __init__(self, mean: Triple, std: Triple) -> None:
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, 3, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(1, 3, 1, 1)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = default_collate(samples)
        for key in (key for key in VIEW_KEYS if key in batch):
            pixels = batch[key].permute(0, 3, 1, 2)  # [B, S, S, 3] -> [B, 3, S, S]
            out = torch.empty(pixels.shape, dtype=torch.float32)
            torch.mul(pixels, self.scale, out=out)
            batch[key] = out.add_(self.shift)
        if "small_views" in batch:  # [B, N, s, s, 3] -> [N, B, 3, s, s], view-major (views.multicrop)
            pixels = batch["small_views"].permute(1, 0, 4, 2, 3)
            out = torch.empty(pixels.shape, dtype=torch.float32)
            torch.mul(pixels, self.scale, out=out)
            batch["small_views"] = out.add_(self.shift)
        return batch


class SimCLRTrainingDataset(Dataset):
    """Turns a (PIL image, label) dataset into the SimCLR batch contract; use with its `collate`.

    Items hold uint8 views [S, S, 3]; `collate` (a `NormaliseViews`) makes the normalised float batch
    {"view1", "view2"[, "probe_view"]: [B, 3, S, S], "label": [B] int64}, the probe view only when a
    `probe_view` is given (it costs a third view per image and only the weak-view probe reads it).
    """

    def __init__(
        self,
        images: Dataset,
        view: PilSimCLRView,
        probe_view: PilProbeView | None = None,
        rank: int = 0,
        small_views: tuple[PilSimCLRView, int] | None = None,
    ) -> None:
        """`small_views`: (the small view, how many per image), drawn after the others (views.multicrop);
        items then hold "small_views" [N, s, s, 3] and batches [N, B, 3, s, s]."""
        self.images = images
        self.view = view
        self.probe_view = probe_view
        self.small_views = small_views
        self.collate = NormaliseViews(view.config.mean, view.config.std)
        self.generator = ProcessGenerator(rank)

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        image, label = self.images[index]
        if image.mode != "RGB":
            image = image.convert("RGB")
        rng = self.generator()
        item: dict[str, Tensor | int] = {"view1": self.view(image, rng), "view2": self.view(image, rng)}
        if self.probe_view is not None:
            item["probe_view"] = self.probe_view(image, rng)
        if self.small_views is not None:
            small_view, count = self.small_views
            item["small_views"] = torch.stack([small_view(image, rng) for _ in range(count)])
        item["label"] = int(label)
        return item
