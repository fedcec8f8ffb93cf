"""Decoding image files into 8-bit RGB, the one form every view path starts from.

Every mode a folder may hold (L, RGBA, P, CMYK, 16-bit, ...) becomes 8-bit RGB, and a file that does
not decode stops the run with its name.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from reliability.errors import UserError

# PIL's modes for single-channel 16-bit images (16-bit PNGs and TIFFs open in one of these).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class UnreadableImageError(UserError):
    """An image file that PIL cannot decode: not an image, truncated, or corrupted."""


def load_rgb(path: str) -> Image.Image:
    """Every mode (L, RGBA, P, CMYK, 16-bit, ...) becomes 8-bit RGB so all images batch together.

    A file that does not decode stops the run with its name: hours into an epoch, "cannot identify
    image file" from deep inside a DataLoader worker does not say which of a million files to fix.
    """
    try:
        with Image.open(path) as image:
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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL reports truncated data as OSError and some malformed headers as SyntaxError/ValueError.
        raise UnreadableImageError(
            f"Image file '{path}' cannot be read ({type(error).__name__}: {error}); it is not an image, or "
            "it is truncated or corrupted. Replace or delete it."
        ) from error


def _sixteen_to_eight_bits(pixels: np.ndarray) -> np.ndarray:
    """(H, W) values 0-65535 -> uint8 0-255, rounded to the nearest (65535 -> 255, 32896 -> 128)."""
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
