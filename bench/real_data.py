"""Real CIFAR-10 pixels written in the official CIFAR-10 / STL-10 file formats, for offline benchmarks.

The benchmarks build the project's own datamodules from the config files, and those read the official
formats through torchvision. This machine has the CIFAR-10 training images only as JPEGs, so the first
N of them are decoded once and written as the CIFAR-10 python batches, or upscaled to 96 px and written
as the STL-10 binaries. torchvision checks the files' md5 sums against the official ones; `official_files`
points those checks at the written files for as long as its context is open (nothing is changed outside).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
from PIL import Image
from torchvision.datasets import CIFAR10, STL10

CIFAR10_JPEG_ROOT = Path("/work/shared/data/cifar10")
CIFAR_TRAIN_BATCHES = 5
# Images written to the test split: the datamodule's setup("fit") also opens it, nothing times it.
TEST_IMAGES = 16


def jpeg_pixels(root: Path, count: int) -> np.ndarray:
    """The first `count` training JPEGs of `root`, taken class by class in turn: uint8 [N, H, W, 3].

    Round-robin over the classes (each in file-name order) keeps the sample balanced for any count.
    """
    split = root / "train"
    classes = sorted(path for path in split.iterdir() if path.is_dir())
    if not classes:
        raise FileNotFoundError(f"No class folders in '{split}'; --jpeg-root wants CIFAR-10 as JPEG folders.")
    files = [sorted(folder.glob("*.jpg")) for folder in classes]
    picked: list[Path] = []
    for rank in range(max(len(names) for names in files)):
        picked.extend(names[rank] for names in files if rank < len(names))
        if len(picked) >= count:
            break
    if len(picked) < count:
        raise ValueError(f"'{split}' holds {len(picked)} JPEGs, fewer than the {count} asked for (--images).")
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in picked[:count]])


def synthetic_pixels(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Random uint8 [N, size, size, 3], for the smoke run on machines without the JPEGs."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def upscale(pixels: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W, 3] -> [N, size, size, 3] by PIL's bicubic resize (how STL-sized images are made here)."""
    if pixels.shape[1] == size:
        return pixels
    return np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BICUBIC)) for p in pixels])


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def labels_of(count: int) -> np.ndarray:
    """Image i is of class i % 10: true of `jpeg_pixels`' round-robin order while every class has images."""
    return np.arange(count) % 10


def _cifar_batch(path: Path, pixels: np.ndarray, labels: np.ndarray) -> list[str]:
    # Rows are channel-planar (1024 red, 1024 green, 1024 blue values, each row-major), as the official files.
    data = pixels.transpose(0, 3, 1, 2).reshape(len(pixels), -1)
    content = {"data": data, "labels": labels.tolist(), "batch_label": path.name}
    path.write_bytes(pickle.dumps(content, protocol=2))
    return [path.name, _md5(path)]


def write_cifar10(root: Path, pixels: np.ndarray) -> dict[str, object]:
    """Writes `pixels` [N, 32, 32, 3] as cifar-10-batches-py; returns the CIFAR10 attributes to patch."""
    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True)
    pixel_chunks = np.array_split(pixels, CIFAR_TRAIN_BATCHES)
    label_chunks = np.array_split(labels_of(len(pixels)), CIFAR_TRAIN_BATCHES)
    train_list = [
        _cifar_batch(folder / f"data_batch_{i}", chunk, labels)
        for i, (chunk, labels) in enumerate(zip(pixel_chunks, label_chunks, strict=True), start=1)
    ]
    test = pixels[:TEST_IMAGES]
    test_list = [_cifar_batch(folder / "test_batch", test, labels_of(len(test)))]
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": [f"class_{k}" for k in range(10)]}, protocol=2))
    return {
        "train_list": train_list,
        "test_list": test_list,
        "meta": {"filename": meta.name, "key": "label_names", "md5": _md5(meta)},
    }


def _stl_images(path: Path, pixels: np.ndarray) -> list[str]:
    # Each channel column-major: [N, 3, W, H] on disk, which torchvision transposes back.
    np.ascontiguousarray(pixels.transpose(0, 3, 2, 1)).tofile(path)
    return [path.name, _md5(path)]


def _stl_labels(path: Path, count: int) -> list[str]:
    (labels_of(count) + 1).astype(np.uint8).tofile(path)  # 1-based on disk
    return [path.name, _md5(path)]


def write_stl10(root: Path, pixels: np.ndarray) -> dict[str, object]:
    """Writes `pixels` [N, 96, 96, 3] as stl10_binary; returns the STL10 attributes to patch.

    One image in twenty is labelled (train_X.bin), the rest unlabeled, as in STL-10 (5k of 105k).
    """
    folder = root / STL10.base_folder
    folder.mkdir(parents=True)
    labelled = max(1, len(pixels) // 20)
    train_list = [
        _stl_images(folder / "train_X.bin", pixels[:labelled]),
        _stl_labels(folder / "train_y.bin", labelled),
        _stl_images(folder / "unlabeled_X.bin", pixels[labelled:]),
    ]
    test_list = [
        _stl_images(folder / "test_X.bin", pixels[:TEST_IMAGES]),
        _stl_labels(folder / "test_y.bin", min(TEST_IMAGES, len(pixels))),
    ]
    (folder / "class_names.txt").write_text("\n".join(f"class_{k}" for k in range(10)) + "\n")
    return {"train_list": train_list, "test_list": test_list}


@contextmanager
def official_files(root: Path, image_size: int, pixels: np.ndarray) -> Iterator[None]:
    """Writes `pixels` under `root` in the format of the `image_size` dataset (32: CIFAR-10, 96: STL-10).

    While open, torchvision's md5 checks accept these files instead of the official ones.
    """
    dataset, writer = (CIFAR10, write_cifar10) if image_size == 32 else (STL10, write_stl10)
    if pixels.shape[1:] != (image_size, image_size, 3):
        raise ValueError(f"pixels of shape {pixels.shape[1:]} do not fit a {image_size} px dataset.")
    attributes = writer(root, pixels)
    with ExitStack() as stack:
        for name, value in attributes.items():
            stack.enter_context(mock.patch.object(dataset, name, value))
        yield
