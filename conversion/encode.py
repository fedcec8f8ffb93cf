"""One image file as the JPEG bytes a shard stores: upright, RGB or grey, at most `max_side` px.

A JPEG that needs no change (no EXIF rotation, not larger than `max_side`, RGB or grey) keeps its own
bytes: re-encoding would lose quality and time for nothing. Everything else is decoded as training
decodes it (16-bit images scaled to 8 bits, palettes and alpha to RGB), turned upright by its EXIF
orientation, scaled down with an antialiasing filter when larger than `max_side`, and saved as a
JPEG of `quality`. Every file is decoded here in full, so a truncated or corrupt image stops the
conversion, naming the file, instead of a training run hours later.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from datamodules.folder_stats import PixelSums
from views.decode import exif_orientation, load_rgb

PASSTHROUGH_MODES = ("RGB", "L")


@dataclass(frozen=True)
class EncodedImage:
    data: bytes  # the JPEG file
    width: int
    height: int
    # Of the stored pixels, for the mean/std estimate; only for the images the conversion samples.
    pixel_sums: PixelSums | None = None


def encode_image(path: str, max_side: int | None, quality: int, measure: bool = False) -> EncodedImage:
    with open(path, "rb") as file:
        source = file.read()
    if _unchanged_jpeg(source, max_side):
        image = load_rgb(path)  # decodes every pixel: a truncated file fails here
        data = source
    else:
        image = load_rgb(path)  # upright, as its EXIF orientation says
        if max_side is not None and max(image.size) > max_side:
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        data = buffer.getvalue()
        if measure:  # what training will decode, JPEG loss included
            image = Image.open(io.BytesIO(data)).convert("RGB")
    return EncodedImage(data, image.width, image.height, PixelSums.of(image) if measure else None)


def _unchanged_jpeg(source: bytes, max_side: int | None) -> bool:
    """Only the header is read: format, mode, size and orientation."""
    try:
        with Image.open(io.BytesIO(source)) as image:
            return (
                image.format == "JPEG"
                and image.mode in PASSTHROUGH_MODES
                and (max_side is None or max(image.size) <= max_side)
                and exif_orientation(image) == 1  # as load_rgb reads it
            )
    except (OSError, SyntaxError, ValueError):
        return False  # load_rgb names the file
