"""Decoding a training image file for the crops of its views: no more pixels than the crops need.

JPEGs (most photo folders) are decoded by libjpeg-turbo through `torchvision.io.decode_jpeg`, straight
into a uint8 tensor: measured per core at 224 px, this took half the time of the project's PIL loader
(PIL's open, its RGBX copy and the conversion to RGB), and its pixels are identical (tested). When
both views' crop boxes are at least 2, 4 or 8 times the view size in both directions, the JPEG is
decoded at that reduced scale instead (libjpeg's DCT scaling, through Pillow's `draft`): a 12-megapixel
photograph then costs a 16th or 64th of its full decode, and a huge image is never decoded at full size
when its crops do not need it. The crops still shrink to the view size from at least its size, so
the reduction only replaces part of the antialiased downscale (README, Speed, states the difference).

EXIF orientation is applied on every path, as the project's loader applies it. Files that are not
JPEGs, and JPEGs that libjpeg-turbo refuses, go through that loader (`views.decode.load_rgb`), which
decodes every other format and stops a run on a broken file with its name.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg

from views.decode import load_rgb

Box = tuple[int, int, int, int]  # (left, top, right, bottom)
# libjpeg's DCT scaling decodes at 1/1, 1/2, 1/4 or 1/8 of each side.
REDUCTIONS = (8, 4, 2)
# EXIF orientations that swap width and height (transposed or rotated by 90 degrees).
SIDEWAYS_ORIENTATIONS = (5, 6, 7, 8)
EXIF_ORIENTATION = 0x0112


def pil_to_tensor(image: Image.Image) -> Tensor:
    """An RGB PIL image as uint8 [3, H, W] (channels-last memory, as torchvision's decoder returns it)."""
    return torch.from_numpy(np.array(image.convert("RGB") if image.mode != "RGB" else image)).permute(2, 0, 1)


@dataclass
class ImageFile:
    """A training image file, its header read: the size its views are drawn from, before any decode."""

    path: str
    data: bytes
    header: Image.Image | None  # an opened, not yet decoded JPEG; None for other files (decoded already)
    size: tuple[int, int]  # (width, height) after EXIF orientation
    decoded: Tensor | None = None  # [3, H, W] uint8 when decoding was needed to know the size

    @classmethod
    def open(cls, path: str) -> ImageFile:
        with open(path, "rb") as file:
            data = file.read()
        try:
            header = Image.open(io.BytesIO(data))
            if header.format == "JPEG":
                width, height = header.size
                if header.getexif().get(EXIF_ORIENTATION, 1) in SIDEWAYS_ORIENTATIONS:
                    width, height = height, width
                return cls(path, data, header, (width, height))
        except Exception:  # noqa: BLE001 - whatever PIL makes of a bad file, the loader reports it as such
            pass
        decoded = pil_to_tensor(load_rgb(path))
        return cls(path, data, None, (decoded.shape[2], decoded.shape[1]), decoded)

    def reduction_for(self, boxes: Sequence[Box], view_size: int) -> int:
        """The largest DCT reduction that leaves every box at least `view_size` on both sides (1: none)."""
        if self.header is None:
            return 1
        smallest = min(min(right - left, bottom - top) for left, top, right, bottom in boxes)
        return next((factor for factor in REDUCTIONS if smallest >= factor * view_size), 1)

    def decode(self, reduction: int = 1) -> Tensor:
        """The image as uint8 [3, h, w], EXIF orientation applied, each side divided by `reduction`
        (rounded up, as libjpeg scales)."""
        if self.decoded is not None:
            return self.decoded
        try:
            if reduction == 1:
                encoded = torch.frombuffer(bytearray(self.data), dtype=torch.uint8)
                return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
            assert self.header is not None
            image = self.header
            raw_width, raw_height = image.size
            image.draft("RGB", (-(-raw_width // reduction), -(-raw_height // reduction)))
            return pil_to_tensor(ImageOps.exif_transpose(image))
        except Exception:  # noqa: BLE001 - a JPEG libjpeg-turbo refuses: the loader decodes it or names it
            return pil_to_tensor(load_rgb(self.path))


def scale_boxes(boxes: Sequence[Box], size: tuple[int, int], decoded: Tensor) -> list[Box]:
    """Boxes drawn on an image of `size` (width, height), in the pixels of its (reduced) decode."""
    height, width = decoded.shape[1], decoded.shape[2]
    if (width, height) == size:
        return list(boxes)
    x_scale, y_scale = width / size[0], height / size[1]
    scaled = []
    for left, top, right, bottom in boxes:
        new_left, new_top = round(left * x_scale), round(top * y_scale)
        new_right = max(new_left + 1, min(width, round(right * x_scale)))
        new_bottom = max(new_top + 1, min(height, round(bottom * y_scale)))
        scaled.append((new_left, new_top, new_right, new_bottom))
    return scaled
