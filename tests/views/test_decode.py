"""Decoding turns images upright by their EXIF orientation and names a decompression bomb."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from views.decode import UnreadableImageError, load_rgb, upright_size

# A 24 x 16 picture of six solid blocks (3 across, 2 down), each a colour far from the others, so any
# wrong flip or rotation moves a block onto another colour.
COLOURS = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 0], [0, 255, 255], [255, 0, 255]]], dtype=np.uint8
)
STORED = COLOURS.repeat(8, axis=0).repeat(8, axis=1)  # (16, 24, 3)

# How each orientation displays the stored pixels, in the words of the EXIF standard (tag 274).
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored horizontally
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1, :],  # mirrored vertically
    5: lambda a: np.rot90(a[:, ::-1], k=1),  # mirrored horizontally, then rotated 270 clockwise
    6: lambda a: np.rot90(a, k=-1),  # rotated 90 clockwise
    7: lambda a: np.rot90(a[:, ::-1], k=-1),  # mirrored horizontally, then rotated 90 clockwise
    8: lambda a: np.rot90(a, k=1),  # rotated 270 clockwise
}


def save_jpeg(path: Path, pixels: np.ndarray, orientation: int | None = None) -> Path:
    """A real JPEG as a camera writes one: the pixels as stored, the orientation in its EXIF block."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=95, subsampling=0, exif=exif)
    return path


def write_bomb_png(path: Path, side: int = 20000) -> Path:
    """The header of a side x side RGB PNG (with a token of pixel data): what Pillow refuses on open."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_upright(tmp_path: Path, orientation: int) -> None:
    path = save_jpeg(tmp_path / "photo.jpg", STORED, orientation)
    expected = DISPLAYED[orientation](STORED)
    pixels = np.asarray(load_rgb(str(path)), dtype=np.int16)
    assert pixels.shape == expected.shape
    assert np.abs(pixels - expected).mean() < 4  # JPEG noise; a wrong turn moves whole blocks of 255
    # Header only: orientations 5-8 swap width and height.
    assert upright_size(str(path)) == (expected.shape[1], expected.shape[0])


def test_an_orientation_outside_the_standard_or_none_leaves_the_pixels_as_stored(tmp_path: Path) -> None:
    for name, orientation in (("none.jpg", None), ("nine.jpg", 9)):
        path = save_jpeg(tmp_path / name, STORED, orientation)
        assert np.abs(np.asarray(load_rgb(str(path)), dtype=np.int16) - STORED).mean() < 4
        assert upright_size(str(path)) == (24, 16)


def test_a_png_size_is_read_without_decoding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "plain.png"
    Image.fromarray(STORED).save(path)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the header scan decoded pixels")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert upright_size(str(path)) == (24, 16)


def test_a_decompression_bomb_is_named_with_the_limit(tmp_path: Path) -> None:
    bomb = write_bomb_png(tmp_path / "huge.png")
    for read in (load_rgb, upright_size):
        with pytest.raises(UnreadableImageError) as raised:
            read(str(bomb))
        message = str(raised.value)
        assert f"Image file '{bomb}'" in message and "400000000 pixels" in message
        assert f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels" in message and "Downscale it" in message
        assert "\n" not in message
