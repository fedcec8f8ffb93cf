"""What an image folder says about itself: its native size (from file headers) and its pixel statistics.

A folder of 32x32 CIFAR JPEGs must train like CIFAR-10: at 32 px with the CIFAR stem, evaluated on
every pixel and normalised with its own mean/std, not upscaled to 224 px with ImageNet's statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

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
    """The side of every image of the folder when all are one square size, else None (see native_size)."""
    return native_size(distinct_sizes(image_files(split_dirs)), str(split_dirs[0].parent), image_size)


def native_size(
    sizes: Sequence[tuple[tuple[int, int], str]], where: str, image_size: int | None
) -> int | None:
    """The side when `sizes` (the first distinct (width, height) met, each with an example file) is one
    square size, else None. With `image_size` None the native size is required: mixed or non-square
    sizes stop with one line that names example files and sizes, and how to choose a size."""
    if len(sizes) == 1 and sizes[0][0][0] == sizes[0][0][1]:
        return sizes[0][0][0]
    if image_size is not None or not sizes:
        return None
    described = " and ".join(f"'{path}' is {width}x{height}" for (width, height), path in sizes[:2])
    what = "images of different sizes" if len(sizes) > 1 else "non-square images"
    raise UserError(
        f"{what.capitalize()} in '{where}' ({described}), so there is no native size to "
        "train at; pass --data.image_size N to train on N x N crops."
    )


def given_statistics(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[Triple, Triple] | None:
    """--data.mean and --data.std as given (both, or neither: None, to be measured), checked."""
    if (mean is None) != (std is None):
        raise ValueError("--data.mean and --data.std go together: give both, or neither (estimated).")
    if mean is None or std is None:
        return None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean={mean} and std={std} need 3 values (R, G, B); std must be > 0.")
    return _triple(mean), _triple(std)


def _triple(values: Sequence[float]) -> Triple:
    return (float(values[0]), float(values[1]), float(values[2]))


@dataclass(frozen=True)
class PixelSums:
    """Per-channel sums of the 8-bit values of some images' pixels, and of their squares: exact integers.

    Counted from Pillow's histogram, 36x faster than summing the pixels as floats on a 430x430 photo.
    """

    total: np.ndarray  # [3] int64
    total_sq: np.ndarray  # [3] int64
    count: int  # pixels

    @classmethod
    def of(cls, image: Image.Image) -> PixelSums:
        rgb = image.convert("RGB")
        counts = np.asarray(rgb.histogram(), dtype=np.int64).reshape(3, 256)
        values = np.arange(256, dtype=np.int64)
        return cls(counts @ values, counts @ (values * values), rgb.width * rgb.height)


def stats_sample(count: int, seed: int = 0, sample_size: int = STATS_SAMPLE_SIZE) -> np.ndarray:
    """Sorted indices of the seeded sample of `count` images whose pixels give mean/std."""
    return np.sort(np.random.default_rng(seed).choice(count, size=min(sample_size, count), replace=False))


def mean_std(sums: Sequence[PixelSums]) -> tuple[Triple, Triple]:
    """Per-channel mean and std of the pixels in [0, 1], every sampled pixel counted once, to 4 decimals."""
    count = sum(part.count for part in sums)
    mean = np.sum([part.total for part in sums], axis=0) / (255.0 * count)
    mean_sq = np.sum([part.total_sq for part in sums], axis=0) / (255.0**2 * count)
    std = np.sqrt(np.maximum(mean_sq - np.square(mean), 1e-12))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)  # type: ignore[return-value]


def estimate_mean_std(
    paths: Sequence[str], seed: int = 0, sample_size: int = STATS_SAMPLE_SIZE
) -> tuple[Triple, Triple]:
    """Per-channel mean and std of the pixels (in [0, 1], RGB) of a seeded sample of `paths`."""
    return mean_std(
        [PixelSums.of(load_rgb(paths[int(i)])) for i in stats_sample(len(paths), seed, sample_size)]
    )
