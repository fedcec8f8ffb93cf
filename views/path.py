"""Which view path a run takes, and the one line that says why.

- batched, from decoded images: the training images are decoded once into one uint8 tensor and each
  batch's views are made for the whole batch at once (`views.batched`). On an accelerator the tensor
  sits on the device and the views are made there after the transfer (the datamodule's
  `on_after_batch_transfer`), so the CPU does nothing per step but gather indices. On a CPU-only run the
  views are made inside the DataLoader workers instead, a whole batch per worker task: the main process,
  which trains the model, then never waits for augmentation as long as the workers keep up, exactly as
  on the per-image path.
- batched, from files (images of any size): the workers read each batch's files, JPEGs as their bytes;
  the batch is decoded where its views are made (on an accelerator by nvJPEG, one call per batch) and
  all its crops are resized in one antialiased pass (`views.any_size`). On a CPU-only run the workers
  decode and make the views.
- per_image: PIL views one image at a time in the workers (`views.per_image`).
"auto" takes the batched path from decoded images whenever every training image has one size (CIFAR,
STL-10, an image folder whose files all have one size), at most twice the view size, and the decoded
images fit in half the available memory, and, on a CPU-only run, the views are at most
CPU_BATCHED_MAX_VIEW_SIZE px: made on CPU cores, batched views were faster per core than per-image PIL
views at 32 px, slower at 96 px. Otherwise, on an accelerator, a dataset of files (an image folder)
takes the batched path from files; elsewhere auto takes the per-image path, and `--data.view_path
batched` asks for the batched path from files (the same code, decoding on the CPU).
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
    # Batched views of images read from their files per batch (images of any size), not cached decoded.
    from_files: bool = False

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
    has_files: bool = False,
) -> ViewPathChoice:
    """The path for `requested` on `device`; `training_sizes` lists up to two distinct (width, height)
    of the training images, and `image_count` counts them (each is asked only when needed).
    `has_files`: the training images are files the batched path can read per batch (an image folder)."""
    if requested == "per_image":
        return ViewPathChoice(False, "--data.view_path per_image")
    sizes = training_sizes()
    (width, height) = sizes[0]
    per_image_reason = None
    if len(sizes) > 1:
        (w2, h2) = sizes[1]
        if requested == "batched" and not has_files:
            raise ValueError(
                f"--data.view_path batched needs training images of one size, but '{root}' "
                f"has {width}x{height} and {w2}x{h2} images (width x height); resize them offline "
                "to one size or use --data.view_path auto (per-image views)."
            )
        obstacle = f"training images differ in size, e.g. {width}x{height} and {w2}x{h2}"
    elif requested == "auto" and device.type == "cpu" and image_size > CPU_BATCHED_MAX_VIEW_SIZE:
        # The views would be made on CPU cores, in the workers.
        return ViewPathChoice(
            False,
            f"{image_size} px views on CPU: above {CPU_BATCHED_MAX_VIEW_SIZE} px per-image PIL "
            "views are faster per core than batched ones",
        )
    elif requested == "auto" and max(width, height) > MAX_DOWNSCALE * image_size:
        obstacle = f"{width}x{height} training images for {image_size} px views"
        per_image_reason = (
            f"{obstacle}: batched crops are not antialiased, so auto keeps the per-image path for "
            "large downscaling"
        )
    else:
        count = image_count()
        needed, available = 3 * width * height * count, _available_memory()
        if requested != "auto" or not available or needed <= CACHE_MEMORY_SHARE * available:
            where = "on the CPU" if device.type == "cpu" else f"on {device}"
            return ViewPathChoice(
                True, f"all {count} training images are {width}x{height}; views made {where}"
            )
        obstacle = (
            f"{count} images of {width}x{height} take {needed / 2**30:.1f} GiB decoded, over "
            f"{CACHE_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB of memory available"
        )
    if has_files and (requested == "batched" or device.type != "cpu"):
        made = "decoded and views made in the DataLoader workers"
        if device.type != "cpu":
            made = f"JPEGs decoded and views made on {device}"
        return ViewPathChoice(True, f"{obstacle}; files read per batch, {made} (antialiased crops)", True)
    return ViewPathChoice(False, per_image_reason or obstacle)


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
