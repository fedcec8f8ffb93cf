"""Which of the two view paths a run takes, and the one line that says why.

- batched: the training images are decoded once into one uint8 tensor and each batch's views are made
  for the whole batch at once (`views.batched`). On an accelerator the tensor sits on the device and
  the views are made there after the transfer (the datamodule's `on_after_batch_transfer`), so the CPU
  does nothing per step but gather indices. On a CPU-only run the views are made inside the DataLoader
  workers instead, a whole batch per worker task: the main process, which trains the model, then never
  waits for augmentation as long as the workers keep up, exactly as on the per-image path.
- per_image: PIL views one image at a time in the workers (`views.per_image`); the only choice for
  images of different sizes, which cannot share one tensor.
"auto" takes the batched path whenever every training image has one size (CIFAR, STL-10, an image
folder whose files all have one size), at most twice the view size, and the decoded images fit in half
the available memory, and, on a CPU-only run, the views are at most CPU_BATCHED_MAX_VIEW_SIZE px: made
on CPU cores, batched views were faster per core than per-image PIL views at 32 px, slower at 96 px.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

ViewPath = Literal["auto", "batched", "per_image"]
# "auto" caches the decoded training images only when they take at most this share of available memory.
CACHE_MEMORY_SHARE = 0.5
# ... and only when images are at most this many times the view size: batched crops are resized without
# antialiasing, invisible for crops up to twice the output but aliasing for larger ones.
MAX_DOWNSCALE = 2
# On a CPU-only run "auto" makes batched views only up to this view size: per core (bench/views.py, one
# thread, 9 interleaved rounds, 2-core machine at load 4.3) batched views made 4.7x the peers' PIL
# pipeline at 32 px but 0.51x at 96 px, where the per-image PIL path made 1.8x.
CPU_BATCHED_MAX_VIEW_SIZE = 64


@dataclass(frozen=True)
class ViewPathChoice:
    """The path a run takes and why, e.g. batched (all 50000 training images are 32x32; ...)."""

    batched: bool
    reason: str

    def __str__(self) -> str:
        return f"{'batched' if self.batched else 'per_image'} ({self.reason})"


def resolve_view_path(view_path: ViewPath, gpu_augment: bool | None) -> ViewPath:
    """The view path asked for, with the deprecated `gpu_augment` alias folded in (and warned about)."""
    if view_path not in ("auto", "batched", "per_image"):
        raise ValueError(f"view_path={view_path!r} must be one of 'auto', 'batched', 'per_image'.")
    if gpu_augment is None:
        return view_path
    aliased: ViewPath = "batched" if gpu_augment else "per_image"
    if view_path not in ("auto", aliased):
        raise ValueError(f"gpu_augment={gpu_augment} contradicts view_path={view_path!r}; drop gpu_augment.")
    warnings.warn(
        f"--data.gpu_augment is deprecated; use --data.view_path {aliased} (default: auto).",
        FutureWarning,
        stacklevel=3,
    )
    return aliased


def choose_view_path(
    requested: ViewPath,
    image_size: int,
    device: torch.device,
    training_sizes: Callable[[], list[tuple[int, int]]],
    image_count: Callable[[], int],
    root: str,
) -> ViewPathChoice:
    """The path for `requested` on `device`; `training_sizes` lists up to two distinct (width, height)
    of the training images, and `image_count` counts them (each is asked only when needed)."""
    if requested == "per_image":
        return ViewPathChoice(False, "--data.view_path per_image")
    # The views are made where the images are trained on: on the device, else in CPU workers.
    slower_on_cpu = device.type == "cpu" and image_size > CPU_BATCHED_MAX_VIEW_SIZE
    sizes = training_sizes()
    (width, height) = sizes[0]
    if len(sizes) > 1:
        (w2, h2) = sizes[1]
        if requested == "batched":
            raise ValueError(
                f"--data.view_path batched needs training images of one size, but '{root}' "
                f"has {width}x{height} and {w2}x{h2} images (width x height); resize them offline "
                "to one size or use --data.view_path auto (per-image views)."
            )
        return ViewPathChoice(False, f"training images differ in size, e.g. {width}x{height} and {w2}x{h2}")
    if requested == "auto" and slower_on_cpu:
        return ViewPathChoice(
            False,
            f"{image_size} px views on CPU: above {CPU_BATCHED_MAX_VIEW_SIZE} px per-image PIL "
            "views are faster per core than batched ones",
        )
    if requested == "auto" and max(width, height) > MAX_DOWNSCALE * image_size:
        return ViewPathChoice(
            False,
            f"{width}x{height} training images for {image_size} px views: batched crops "
            "are not antialiased, so auto keeps the per-image path for large downscaling",
        )
    count = image_count()
    needed, available = 3 * width * height * count, _available_memory()
    if requested == "auto" and available and needed > CACHE_MEMORY_SHARE * available:
        return ViewPathChoice(
            False,
            f"{count} images of {width}x{height} take {needed / 2**30:.1f} GiB decoded, over "
            f"{CACHE_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB of memory available",
        )
    where = "on the CPU" if device.type == "cpu" else f"on {device}"
    return ViewPathChoice(True, f"all {count} training images are {width}x{height}; views made {where}")


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
