"""Tiny datasets written in the real on-disk formats, so the datamodules run through torchvision unchanged.

torchvision verifies md5 sums of the CIFAR/STL files; the writers point those checks at the md5 of the
files written here (on the torchvision classes, undone by monkeypatch), leaving the product code untouched.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, CIFAR100, STL10


@dataclass
class WrittenSplit:
    images: np.ndarray  # [N, H, W, 3] uint8, exactly what was written
    labels: np.ndarray  # [N] int64, 0-based (-1 for unlabeled)


@dataclass
class WrittenDataset:
    root: Path
    train: WrittenSplit
    test: WrittenSplit
    unlabeled: WrittenSplit | None = None


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def random_split(rng: np.random.Generator, count: int, size: int, num_classes: int) -> WrittenSplit:
    images = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count).astype(np.int64)
    return WrittenSplit(images, labels)


def _cifar_batch(split: WrittenSplit, label_key: str) -> dict:
    # CIFAR rows are channel-planar: 1024 red, then 1024 green, then 1024 blue values, each row-major.
    data = split.images.transpose(0, 3, 1, 2).reshape(len(split.images), -1)
    return {"data": data, label_key: split.labels.tolist(), "batch_label": "fake batch"}


def _dump(path: Path, content: dict) -> str:
    path.write_bytes(pickle.dumps(content, protocol=2))
    return md5_of(path)


def write_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    rng = np.random.default_rng(10)
    folder = tmp_path / CIFAR10.base_folder
    folder.mkdir()
    batches = [random_split(rng, 4, 32, 10) for _ in range(5)]
    test = random_split(rng, 10, 32, 10)
    train_list = [
        [f"data_batch_{i}", _dump(folder / f"data_batch_{i}", _cifar_batch(batch, "labels"))]
        for i, batch in enumerate(batches, start=1)
    ]
    test_list = [["test_batch", _dump(folder / "test_batch", _cifar_batch(test, "labels"))]]
    meta_md5 = _dump(folder / "batches.meta", {"label_names": [f"written_{i}" for i in range(10)]})
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", test_list)
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": meta_md5})
    images = np.concatenate([batch.images for batch in batches])
    train = WrittenSplit(images, np.concatenate([batch.labels for batch in batches]))
    return WrittenDataset(tmp_path, train, test)


def write_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    rng = np.random.default_rng(100)
    folder = tmp_path / CIFAR100.base_folder
    folder.mkdir()
    train = random_split(rng, 20, 32, 100)
    test = random_split(rng, 10, 32, 100)
    train_md5 = _dump(folder / "train", {**_cifar_batch(train, "fine_labels"), "coarse_labels": [0] * 20})
    test_md5 = _dump(folder / "test", {**_cifar_batch(test, "fine_labels"), "coarse_labels": [0] * 10})
    meta_md5 = _dump(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", train_md5]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", test_md5]])
    monkeypatch.setattr(CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": meta_md5})
    return WrittenDataset(tmp_path, train, test)


def _write_stl_images(path: Path, images: np.ndarray) -> str:
    # STL-10 stores each channel column-major: on disk [N, C, W, H]; torchvision transposes it back.
    np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tofile(path)
    return md5_of(path)


def _write_stl_labels(path: Path, labels: np.ndarray) -> str:
    (labels + 1).astype(np.uint8).tofile(path)  # STL-10 labels are 1-based on disk
    return md5_of(path)


def write_stl10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    rng = np.random.default_rng(96)
    folder = tmp_path / STL10.base_folder
    folder.mkdir()
    train = random_split(rng, 6, 96, 10)
    test = random_split(rng, 6, 96, 10)
    unlabeled = random_split(rng, 10, 96, 10)
    unlabeled.labels[:] = -1
    train_list = [
        ["train_X.bin", _write_stl_images(folder / "train_X.bin", train.images)],
        ["train_y.bin", _write_stl_labels(folder / "train_y.bin", train.labels)],
        ["unlabeled_X.bin", _write_stl_images(folder / "unlabeled_X.bin", unlabeled.images)],
    ]
    test_list = [
        ["test_X.bin", _write_stl_images(folder / "test_X.bin", test.images)],
        ["test_y.bin", _write_stl_labels(folder / "test_y.bin", test.labels)],
    ]
    (folder / "class_names.txt").write_text("\n".join(f"written_{i}" for i in range(10)) + "\n")
    monkeypatch.setattr(STL10, "train_list", train_list)
    monkeypatch.setattr(STL10, "test_list", test_list)
    return WrittenDataset(tmp_path, train, test, unlabeled)


def unnormalise(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Back to the uint8 pixel values the datamodule started from ([..., 3, H, W] -> [..., H, W, 3])."""
    mean_t = np.asarray(mean, dtype=np.float64).reshape(3, 1, 1)
    std_t = np.asarray(std, dtype=np.float64).reshape(3, 1, 1)
    pixels = (images.numpy().astype(np.float64) * std_t + mean_t) * 255.0
    return np.moveaxis(np.round(pixels), -3, -1)
