"""Unusual images and folder trees a user may place on disk: decoded right, or one line naming the problem."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.folder_stats import distinct_sizes
from datamodules.imagefolder import ImageFolderDataModule
from datamodules.listing import image_files
from tests.run_helpers import write_image_folder
from tests.views.test_decode import save_jpeg
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


@pytest.mark.parametrize(
    ("link", "target", "named"),
    [
        ("c", "a", ("train/c", "train/a")),  # a whole class folder that is a link to another class
        ("b/more", "a", ("train/b/more", "train/a")),  # a link inside a class folder to another class
        ("b/extra.png", "a/3.png", ("train/b/extra.png", "train/a/3.png")),  # one linked file
    ],
)
def test_images_reachable_from_two_class_folders_are_refused_naming_both(
    tmp_path: Path, link: str, target: str, named: tuple[str, str]
) -> None:
    root = write_image_folder(tmp_path / "images")
    train = root / "train"
    (train / link).symlink_to(train / target, target_is_directory=(train / target).is_dir())
    if link == "c":
        (root / "val" / "c").mkdir()
        (root / "val" / "a" / "0.png").rename(root / "val" / "c" / "0.png")
    datamodule = ImageFolderDataModule(str(root), batch_size=4, num_workers=0, image_size=16)
    expected = "through a symbolic link, so they would train under two labels"
    with pytest.raises(ValueError, match=expected) as err:
        datamodule.setup("fit")
    linked, original = (str(root / path) for path in named)
    message = str(err.value)
    assert f"'{linked}' (class '{link.split('/')[0]}')" in message and f"'{original}' (class 'a')" in message


def test_phone_photos_train_and_evaluate_upright(tmp_path: Path) -> None:
    """Portrait pictures stored sideways with EXIF orientation 6, as phones write them, beside the same
    pictures stored upright: every reader (header sizes, the decoded uint8 cache, per-image training
    images, evaluation) must see them alike. Before, the header scan saw two sizes, the uint8 cache
    refused the folder, and the other paths trained and evaluated on sideways pictures."""
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 255, 255]])
    root = tmp_path / "photos"
    for split in ("train", "val"):
        for class_index, name in enumerate(("a", "b")):
            folder = root / split / name
            folder.mkdir(parents=True)
            blocks = np.roll(colours, class_index, axis=0).reshape(3, 2, 3).astype(np.uint8)
            portrait = blocks.repeat(8, axis=0).repeat(8, axis=1)  # 24 high, 16 wide
            save_jpeg(folder / "0_upright.jpg", portrait)
            save_jpeg(folder / "1_sideways.jpg", np.rot90(portrait, k=1), orientation=6)
            save_jpeg(folder / "2_upright.jpg", portrait)
    assert [size for size, _ in distinct_sizes(image_files([root / "train", root / "val"]))] == [(16, 24)]

    def close(first: object, second: object) -> bool:
        """Alike up to JPEG noise: a picture turned the wrong way moves whole blocks across the range."""
        one, other = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        return bool(np.abs(one - other).mean() < 0.05 * (one.max() - one.min()))

    settings = dict(batch_size=2, num_workers=0, image_size=16, val_holdout=0)
    cached = ImageFolderDataModule(str(root), view_path="batched", **settings)  # type: ignore[arg-type]
    cached.setup("fit")
    pixels = cached.train_dataset.images  # uint8 [N, 3, 24, 16]: files sorted, a/0, a/1, a/2, b/0, ...
    assert tuple(pixels.shape) == (6, 3, 24, 16)
    assert close(pixels[1], pixels[0]) and close(pixels[4], pixels[3])
    assert not close(pixels[0], pixels[3])  # the two classes differ: the comparison can fail

    per_image = ImageFolderDataModule(str(root), view_path="per_image", **settings)  # type: ignore[arg-type]
    images = per_image._pretrain_images()
    assert images[1][0].size == (16, 24) and close(images[1][0], images[0][0])
    per_image.setup("validate")
    assert close(per_image.val_dataset[1][0], per_image.val_dataset[0][0])
    assert not close(per_image.val_dataset[0][0], per_image.val_dataset[3][0])
