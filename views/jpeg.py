"""Training images of any size for the batched views: read in the workers, decoded where views are made.

A DataLoader worker reads a JPEG's bytes and its header (size, EXIF orientation, colour mode) and
nothing more; the batch is decoded where its views are made: on an accelerator by nvJPEG, the whole
batch in one `torchvision.io.decode_jpeg` call, on a CPU-only run by libjpeg-turbo in the worker. What
cannot go that way is decoded in the worker to pixels: other formats and JPEGs in other colour modes
(CMYK) by the project's loader (views.decode), and images whose longer side exceeds the decoded-size
limit at reduced size: JPEGs at 1/2, 1/4 or 1/8 scale straight from their DCT coefficients (Pillow's
`draft`, far cheaper than a full decode), then, like other formats, resized (antialiased) to fit. The
crop boxes are still drawn from the full size, so a view covers what it would cover at full size.

EXIF orientation (a phone photo stored sideways): torchvision applies it on the CPU only, so the worker
reads it from the header and `orient` applies it after decoding, on every device alike.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from views.decode import SIDEWAYS, UnreadableImageError, exif_orientation, load_rgb

JPEG_SIGNATURE = b"\xff\xd8\xff"
# Modes of JPEGs that decode_jpeg turns into RGB on every device (CMYK and the like go to Pillow).
DECODABLE_JPEG_MODES = ("RGB", "L")
# torchvision 0.29 deprecates its decoders in favour of TorchCodec; they are what this path is built on.
DECODER_DEPRECATION = r".*image decoding and encoding capabilities of TorchVision are deprecated.*"


@dataclass(frozen=True)
class ReadImage:
    """One training image as a worker hands it on: JPEG bytes still to decode, or decoded pixels."""

    data: Tensor  # [bytes] uint8 of a JPEG file, or [3, H, W] uint8 pixels, already oriented
    height: int  # of the image as displayed (EXIF orientation applied), at full resolution
    width: int
    orientation: int  # EXIF orientation (1-8) to apply after decoding `data`; 1 for pixels


def read_image(path: str, max_side: int) -> ReadImage:
    """`path` as its JPEG bytes when they can be decoded where the views are made, else as pixels
    (other formats and colour modes, and images with a side over `max_side`, reduced to fit)."""
    data = Path(path).read_bytes()
    if data.startswith(JPEG_SIGNATURE):
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height, mode = image.width, image.height, image.mode
                orientation = exif_orientation(image)
                if max(width, height) > max_side:
                    pixels = orient(_reduced(image, max_side), orientation)
                    return _pixels(pixels, *_displayed(height, width, orientation))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return _pixels(TF.pil_to_tensor(load_rgb(path)))  # names the file, or reads what Pillow can
        if mode in DECODABLE_JPEG_MODES:
            height, width = _displayed(height, width, orientation)
            return ReadImage(torch.frombuffer(bytearray(data), dtype=torch.uint8), height, width, orientation)
    image = load_rgb(path)
    full_height, full_width = image.height, image.width
    if max(full_width, full_height) > max_side:  # Pillow's antialiased bilinear resize
        image = image.resize(_fitted_size(full_width, full_height, max_side), Image.Resampling.BILINEAR)
    return _pixels(TF.pil_to_tensor(image), full_height, full_width)


def _pixels(pixels: Tensor, height: int | None = None, width: int | None = None) -> ReadImage:
    full_height = pixels.shape[1] if height is None else height
    full_width = pixels.shape[2] if width is None else width
    return ReadImage(pixels, full_height, full_width, 1)


def _displayed(height: int, width: int, orientation: int) -> tuple[int, int]:
    """(height, width) once orientations 5-8, which turn the image a quarter, are applied."""
    return (width, height) if orientation in SIDEWAYS else (height, width)


def _reduced(image: Image.Image, max_side: int) -> Tensor:
    """A JPEG too large to decode whole: straight from its DCT coefficients at the smallest scale (1/2,
    1/4 or 1/8) that keeps it at least the size that fits `max_side`, then resized to fit; uint8 [3, H, W],
    not yet oriented."""
    size = _fitted_size(image.width, image.height, max_side)
    image.draft("RGB", size)
    rgb = image.convert("RGB")
    return TF.pil_to_tensor(rgb if rgb.size == size else rgb.resize(size, Image.Resampling.BILINEAR))


def _fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is `max_side`, aspect ratio kept."""
    ratio = max_side / max(width, height)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def orient(image: Tensor, orientation: int) -> Tensor:
    """EXIF orientation 1-8 applied to [C, H, W], as Pillow's `ImageOps.exif_transpose` applies it."""
    if orientation in SIDEWAYS:
        image = image.transpose(1, 2)  # 5: transposed; 6, 7, 8 transpose and then flip, below
    flips = {2: (2,), 3: (1, 2), 4: (1,), 6: (2,), 7: (1, 2), 8: (1,)}.get(orientation)
    return image.flip(flips) if flips else image


def decode_images(
    items: Sequence[Tensor], orientations: Sequence[int], names: Sequence[str], device: torch.device
) -> list[Tensor]:
    """Each item as uint8 [3, H, W] on `device`, oriented: JPEG bytes decoded there (all in one call),
    pixels moved there. `names` (the files) are for the message when a JPEG does not decode."""
    jpegs = [index for index, item in enumerate(items) if item.ndim == 1]
    decoded: list[Tensor] = []
    if jpegs:
        try:
            decoded = _decode([items[index] for index in jpegs], device)
        except RuntimeError:  # one bad file fails the batch: decode one by one to find it
            decoded = [_decode_one(items[index], names[index], device) for index in jpegs]
    by_index = {
        index: orient(image, orientations[index]) for index, image in zip(jpegs, decoded, strict=True)
    }
    return [by_index[index] if index in by_index else item.to(device) for index, item in enumerate(items)]


def _decode(data: list[Tensor], device: torch.device) -> list[Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DECODER_DEPRECATION, category=DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)  # type: ignore[return-value]


def _decode_one(data: Tensor, name: str, device: torch.device) -> Tensor:
    """One JPEG by torchvision, else by Pillow (which reads some files libjpeg-turbo refuses)."""
    try:
        return _decode([data], device)[0]
    except RuntimeError as error:
        try:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
                return TF.pil_to_tensor(image.convert("RGB")).to(device)
        except (OSError, SyntaxError, ValueError):
            raise UnreadableImageError(
                f"Image file '{name}' cannot be read ({type(error).__name__}: {error}); it is not an image, "
                "or it is truncated or corrupted. Replace or delete it."
            ) from error
