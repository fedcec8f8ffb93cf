"""Small photo-like JPEG files for the tests of the batched views of images of any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION_TAG = 0x0112


def photo_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 [height, width, 3]: smooth colour gradients plus mild noise, so JPEG keeps them close."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    channels = [127 + 100 * np.sin(3 * x + 2 * y + phase) for phase in phases]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, size=(height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def save_jpeg(
    path: Path, pixels: np.ndarray, orientation: int | None = None, mode: str = "RGB", quality: int = 92
) -> Path:
    """`pixels` as stored (before any orientation) in a JPEG, with an EXIF orientation tag if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels).convert(mode)
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION_TAG] = orientation
    image.save(path, format="JPEG", quality=quality, exif=exif.tobytes())
    return path


def write_photo_folder(
    root: Path, sizes: list[tuple[int, int]], classes: tuple[str, ...] = ("cat", "dog"), png_every: int = 0
) -> Path:
    """root/{train,val}/<class>/<i>.jpg with images of the given (width, height); every `png_every`-th
    file a PNG instead (0: none)."""
    for split in ("train", "val"):
        for label, name in enumerate(classes):
            for index, (width, height) in enumerate(sizes):
                pixels = photo_pixels(width, height, seed=1000 * label + index + (split == "val") * 100)
                folder = root / split / name
                if png_every and index % png_every == 0:
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(folder / f"{index}.png")
                else:
                    save_jpeg(folder / f"{index}.jpg", pixels)
    return root
