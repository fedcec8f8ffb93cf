"""What an image folder says about itself: its native size (from file headers) and its pixel statistics.

A folder of 32x32 CIFAR JPEGs must train like CIFAR-10: at 32 px with the CIFAR stem, evaluated on
every pixel and normalised with its own mean/std, not upscaled to 224 px with ImageNet's statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from datamodules.listing import image_files
from reliability.errors import UserError
from views.config import Triple
from views.decode import load_rgb, upright_size  # as training reads them: same modes, upright

# Images decoded to estimate mean/std: the estimate's standard error is far below what normalisation notices.
STATS_SAMPLE_SIZE = 1000


def distinct_sizes(paths: Iterable[str], limit: int = 2) -> list[tuple[tuple[int, int], str]]:
    """The first `limit` distinct upright (width, height) met, each with a file of that size.

    Only headers are read (PIL decodes no pixels in Image.open), and the scan stops at the second size,
    so a folder of mixed sizes costs a few files and a uniform one a header per file. Unreadable files
    are left to the loader, which names them.
    """
    found: dict[tuple[int, int], str] = {}
    for path in paths:
        size = upright_size(path)
        if size is None:
            continue
        if size not in found:
            found[size] = path
            if len(found) >= limit:
                break
    return list(found.items())


def folder_native_size(split_dirs: Sequence[Path], image_size: int | None) -> int | None:
    """The side of every image of the folder when they are all one square size, else None.

    With `image_size` None the native size is required: mixed or non-square sizes stop with one line
    that names example files and sizes, and how to choose a size.
    """
    sizes = distinct_sizes(image_files(split_dirs))
    if len(sizes) == 1 and sizes[0][0][0] == sizes[0][0][1]:
        return sizes[0][0][0]
    if image_size is not None or not sizes:
        return None
    described = " and ".join(f"'{path}' is {width}x{height}" for (width, height), path in sizes)
    what = "images of different sizes" if len(sizes) > 1 else "non-square images"
    raise UserError(
        f"{what.capitalize()} in '{split_dirs[0].parent}' ({described}), so there is no native size to "
        "train at; pass --data.image_size N to train on N x N crops."
    )


def estimate_mean_std(
    paths: Sequence[str], seed: int = 0, sample_size: int = STATS_SAMPLE_SIZE
) -> tuple[Triple, Triple]:
    """Per-channel mean and std of the pixels (in [0, 1], RGB) of a seeded sample of `paths`.

    Every pixel of a sampled image counts once; sums run in float64 so a million-pixel sample loses nothing.
    """
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(paths), size=min(sample_size, len(paths)), replace=False)
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for index in np.sort(chosen):
        pixels = np.asarray(load_rgb(paths[int(index)]), dtype=np.float64).reshape(-1, 3) / 255.0
        total += pixels.sum(axis=0)
        total_sq += np.square(pixels).sum(axis=0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)  # type: ignore[return-value]
