"""Decoding image files into 8-bit RGB, upright, the one form every view path starts from.

Every mode a folder may hold (L, RGBA, P, CMYK, 16-bit, ...) becomes 8-bit RGB, and a file that does
not decode stops the run with its name. Images are turned upright as their EXIF orientation says: a
phone stores a portrait photo as a landscape one with orientation 6 ("rotate 90 degrees clockwise to
view"), and ignoring it trains and evaluates on sideways pictures. Orientations 5-8 swap width and
height, so sizes read from headers are the upright ones too (`upright_size`). A decoder other than
PIL's (torchvision.io.decode_jpeg(..., apply_exif_orientation=True)) must agree with both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from reliability.errors import UserError

# PIL's modes for single-channel 16-bit images (16-bit PNGs and TIFFs open in one of these).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
ORIENTATION_TAG = 0x0112  # EXIF "Orientation"
# EXIF orientation -> the transposition that shows the stored pixels upright (EXIF 2.32, tag 274).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SIDEWAYS = (5, 6, 7, 8)  # the orientations whose upright image has width and height swapped


class UnreadableImageError(UserError):
    """An image file that PIL cannot decode: not an image, truncated, corrupted, or far too large."""


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation of an opened image, from its header alone; 1, as stored, when it has none.

    PIL's PNG plugin decodes the whole image when asked for EXIF it has not met before the pixel data;
    the base method reads only what opening the file parsed (EXIF before the pixels, TIFF tags, XMP), so
    the header scan and decoding agree on every file and the scan decodes nothing. A value outside 1-8
    or an EXIF block that does not parse counts as none: it must not stop a run whose pixels decode fine.
    """
    try:
        orientation = Image.Image.getexif(image).get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1
    return orientation if orientation in UPRIGHT else 1


def upright_size(path: str) -> tuple[int, int] | None:
    """(width, height) of the upright image, from the header alone; None when the file does not open
    (the loader names it when it is read). Refuses a decompression bomb by name, as load_rgb does."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (height, width) if exif_orientation(image) in SIDEWAYS else (width, height)
    except Image.DecompressionBombError as error:
        raise too_many_pixels(path, error) from error
    except (OSError, SyntaxError, ValueError):
        return None


def too_many_pixels(path: str, error: Image.DecompressionBombError) -> UnreadableImageError:
    """PIL's refusal of a decompression bomb says the size but not the file; this says both, and the fix."""
    return UnreadableImageError(
        f"Image file '{path}' is refused as a possible decompression bomb: {error} Pillow refuses images "
        f"over {2 * Image.MAX_IMAGE_PIXELS:,} pixels (2 x PIL.Image.MAX_IMAGE_PIXELS), since decoding one "
        "takes gigabytes. Downscale it (training views are a few hundred pixels wide) or remove it."
    )


def load_rgb(path: str) -> Image.Image:
    """Every mode (L, RGBA, P, CMYK, 16-bit, ...) becomes 8-bit RGB so all images batch together,
    turned upright as its EXIF orientation says.

    A file that does not decode stops the run with its name: hours into an epoch, "cannot identify
    image file" from deep inside a DataLoader worker does not say which of a million files to fix.
    """
    try:
        with Image.open(path) as image:
            transposition = UPRIGHT.get(exif_orientation(image))
            rgb = _eight_bit_rgb(image, path)
            return rgb if transposition is None else rgb.transpose(transposition)
    except Image.DecompressionBombError as error:
        raise too_many_pixels(path, error) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL reports truncated data as OSError and some malformed headers as SyntaxError/ValueError.
        raise UnreadableImageError(
            f"Image file '{path}' cannot be read ({type(error).__name__}: {error}); it is not an image, or "
            "it is truncated or corrupted. Replace or delete it."
        ) from error


def _eight_bit_rgb(image: Image.Image, path: str) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and image.format == "PNG"):
        # PIL's convert() clips 16-bit values at 255: the image would train as solid white.
        return Image.fromarray(_sixteen_to_eight_bits(np.asarray(image))).convert("RGB")
    if image.mode in ("I", "F"):
        raise UnreadableImageError(
            f"Image file '{path}' has 32-bit {'float' if image.mode == 'F' else 'integer'} pixels, "
            "whose range (0-1? 0-65535? any?) is not recorded, so it cannot be mapped to 8 bits "
            "safely. Convert it to an 8- or 16-bit PNG/JPEG/TIFF, or remove it."
        )
    if image.mode == "P":
        # Palette images with transparency must go through RGBA, or PIL warns on every load.
        image = image.convert("RGBA")
    return image.convert("RGB")


def _sixteen_to_eight_bits(pixels: np.ndarray) -> np.ndarray:
    """(H, W) values 0-65535 -> uint8 0-255, rounded to the nearest (65535 -> 255, 32896 -> 128)."""
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
