"""Unusual images and folder trees a user may place on disk: decoded right, or one line naming the problem."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.imagefolder import ImageFolderDataModule
from tests.run_helpers import write_image_folder
from views.decode import UnreadableImageError, load_rgb


def write_png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one). pixels: (H, W, 3) uint16."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


RAMP = (np.arange(144, dtype=np.uint32).reshape(12, 12) * 455).astype(np.uint16)  # 0 ... 65065


def test_a_16_bit_grey_png_is_scaled_not_clipped_to_white(tmp_path: Path) -> None:
    Image.fromarray(RAMP).save(tmp_path / "grey16.png")
    pixels = np.asarray(load_rgb(str(tmp_path / "grey16.png")))
    expected = np.round(RAMP / 65535 * 255)
    assert pixels.shape == (12, 12, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels[..., 0] - expected).max() <= 0.5
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels.min() == 0 and pixels.max() == 253


def test_a_16_bit_grey_tiff_is_scaled_not_clipped_to_white(tmp_path: Path) -> None:
    Image.fromarray(RAMP).save(tmp_path / "grey16.tif")
    pixels = np.asarray(load_rgb(str(tmp_path / "grey16.tif")))
    assert np.abs(pixels[..., 1] - np.round(RAMP / 65535 * 255)).max() <= 0.5


def test_a_16_bit_rgb_png_keeps_its_colours(tmp_path: Path) -> None:
    colour = np.stack([RAMP, RAMP // 2, 65535 - RAMP], axis=-1)
    write_png_rgb16(tmp_path / "rgb16.png", colour)
    pixels = np.asarray(load_rgb(str(tmp_path / "rgb16.png"))).astype(float)
    assert np.abs(pixels - colour / 65535 * 255).max() <= 1.0


@pytest.mark.parametrize(("dtype", "kind"), [(np.float32, "float"), (np.int32, "integer")])
def test_a_32_bit_tiff_is_refused_in_one_line(tmp_path: Path, dtype, kind: str) -> None:
    path = tmp_path / "deep.tif"
    Image.fromarray((RAMP / 65535).astype(dtype) if dtype == np.float32 else RAMP.astype(dtype)).save(path)
    with pytest.raises(UnreadableImageError, match=f"Image file '{path}' has 32-bit {kind} pixels") as error:
        load_rgb(str(path))
    assert "\n" not in str(error.value) and "Convert it to an 8- or 16-bit" in str(error.value)


def test_a_symlink_loop_in_a_class_folder_lists_each_image_once(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images")
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a", target_is_directory=True)
    (root / "train" / "b" / "nested").mkdir()
    (root / "train" / "b" / "nested" / "up").symlink_to(root / "train" / "b", target_is_directory=True)
    (root / "train" / "b" / "nested" / "same.png").symlink_to(root / "train" / "b" / "0.png")
    datamodule = ImageFolderDataModule(str(root), batch_size=4, num_workers=0, image_size=16)
    datamodule.setup("fit")
    labels = [label for _, label in datamodule._pretrain_images().samples]
    assert len(datamodule.train_dataset) == 16 and labels == [0] * 8 + [1] * 8


def test_a_root_that_is_a_file_says_so(tmp_path: Path) -> None:
    archive = tmp_path / "images.tar"
    archive.write_bytes(b"not a folder")
    with pytest.raises(NotADirectoryError, match=f"ImageFolder root '{archive}' is a file, not a folder"):
        ImageFolderDataModule(str(archive), batch_size=4, num_workers=0, image_size=16).setup("fit")


def test_a_single_class_dataset_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "images", classes=("only",))
    with pytest.raises(ValueError, match="has a single class folder \\('only'\\).*at least 2 classes"):
        ImageFolderDataModule(str(root), batch_size=4, num_workers=0, image_size=16).setup("fit")
