"""`shards.py convert`: labels, bytes and statistics survive; images become upright RGB within max_side."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from litdata import StreamingDataset
from PIL import Image

from conversion.convert import ConvertSettings, convert
from datamodules import ImageFolderDataModule
from datamodules.shard_info import INFO_FILENAME, read_shard_info
from tests.shard_helpers import shards_of, write_jpeg_folder
from views.decode import UnreadableImageError


def items(split_folder: Path) -> list[dict]:
    dataset = StreamingDataset(str(split_folder))
    return [dataset[index] for index in range(len(dataset))]


def test_a_folder_becomes_shards_with_its_labels_bytes_sizes_and_statistics(tmp_path: Path) -> None:
    folder = write_jpeg_folder(tmp_path / "images", ("cat", "dog", "eel"), {"train": 7, "test": 3})
    info = convert(folder, tmp_path / "shards", ConvertSettings(workers=2, chunk_bytes="2KB"))
    assert info.to_json() == read_shard_info(str(tmp_path / "shards")).to_json()
    reference = ImageFolderDataModule(str(folder), batch_size=4, num_workers=0)
    assert info.class_names == ["cat", "dog", "eel"] == reference.class_names
    assert list(info.splits) == ["train", "test"]
    for split, count in (("train", 21), ("test", 9)):
        stored = items(tmp_path / "shards" / split)
        assert len(stored) == count == len(info.splits[split])
        paths = [item["path"] for item in stored]
        assert sorted(paths) == sorted(
            str(p.relative_to(folder / split)) for p in (folder / split).rglob("*.jpg")
        )
        assert paths != sorted(paths), "written in folder order: batches would hold one class"
        for item, label in zip(stored, info.splits[split].labels, strict=True):
            assert item["label"] == label == info.class_names.index(item["path"].split("/")[0])
            assert (
                item["image"] == (folder / split / item["path"]).read_bytes()
            )  # unchanged JPEGs keep their bytes
        assert [(size.width, size.height) for size in info.splits[split].sizes] == [(16, 16)]
    # The same sample and arithmetic as an image folder's estimate, on the same pixels.
    assert (info.mean, info.std) == (reference.mean, reference.std)
    assert len(list((tmp_path / "shards" / "train").glob("chunk-*.bin"))) > 1


def exif_rotated(path: Path) -> None:
    """40x20 stored sideways, left half red: with orientation 6 it shows 20x40, upper half red."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, quality=95, exif=exif.tobytes())


def test_images_become_upright_rgb_jpegs_of_at_most_max_side(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for name in ("a", "b"):
        (folder / "train" / name).mkdir(parents=True)
        (folder / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (1, 2, 3)).save(folder / "val" / name / "x.jpg")
    train = folder / "train"
    exif_rotated(train / "a" / "rotated.jpg")
    Image.new("RGB", (100, 60), (250, 10, 10)).save(train / "a" / "large.jpg", quality=95)
    Image.new("RGBA", (30, 10), (10, 200, 30, 90)).save(train / "b" / "alpha.png")
    Image.fromarray(np.full((12, 12), 65535 // 2, dtype=np.uint16)).save(train / "b" / "sixteen.png")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(train / "b" / "cmyk.jpg", quality=95)
    shards_of(folder, tmp_path / "shards", max_side=50, quality=95)

    decoded = {}
    for item in items(tmp_path / "shards" / "train"):
        image = Image.open(io.BytesIO(item["image"]))
        assert image.format == "JPEG" and image.mode in ("RGB", "L")
        decoded[item["path"]] = np.asarray(image.convert("RGB")).astype(int)
    rotated = decoded["a/rotated.jpg"]
    assert rotated.shape == (40, 20, 3)  # upright: taller than wide
    assert rotated[:15, :, 0].mean() > 200 and rotated[25:, :, 0].mean() < 50
    assert decoded["a/large.jpg"].shape == (30, 50, 3)
    assert np.abs(decoded["a/large.jpg"] - (250, 10, 10)).max() <= 6
    assert np.abs(decoded["b/alpha.png"] - (10, 200, 30)).max() <= 6
    assert np.abs(decoded["b/sixteen.png"] - 128).max() <= 2  # scaled to 8 bits, not clipped to white
    assert np.abs(decoded["b/cmyk.jpg"] - (255, 0, 0)).max() <= 6
    sizes = read_shard_info(str(tmp_path / "shards")).splits["train"].sizes
    assert {(size.width, size.height) for size in sizes} <= {(20, 40), (50, 30), (30, 10), (12, 12), (20, 20)}
    assert len(sizes) == 2  # the first two distinct sizes, each with a file that has it


def test_the_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    folder = write_jpeg_folder(tmp_path / "images", per_class={"train": 9, "val": 2})
    one = shards_of(folder, tmp_path / "one")
    two = convert(folder, tmp_path / "two", ConvertSettings(workers=2, chunk_bytes="2KB"))
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    assert files == sorted(
        path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*") if path.is_file()
    )
    for name in files:
        if name.suffix == ".bin":
            assert (one / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
        elif name.name == "index.json":  # LitData's, with the time it was written
            first, second = (json.loads(path.read_text()) for path in (one / name, tmp_path / "two" / name))
            assert first | {"updated_at": None} == second | {"updated_at": None}
    first = json.loads((one / INFO_FILENAME).read_text())
    first["conversion"].pop("seconds")
    assert first == json.loads(two.to_json()) | {"conversion": first["conversion"]}


def test_an_existing_output_is_never_overwritten(tmp_path: Path) -> None:
    folder = write_jpeg_folder(tmp_path / "images")
    out = tmp_path / "shards"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="never overwrites"):
        shards_of(folder, out)
    assert [path.name for path in out.iterdir()] == ["mine.txt"]
    assert not (tmp_path / "shards.incomplete").exists()


def test_a_corrupt_image_stops_the_conversion_naming_it_and_leaves_nothing(tmp_path: Path) -> None:
    folder = write_jpeg_folder(tmp_path / "images", per_class={"train": 6, "val": 1})
    broken = folder / "train" / "b" / "03.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    with pytest.raises(UnreadableImageError, match=r"b/03.jpg' cannot be read"):
        shards_of(folder, tmp_path / "shards")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["images"]
