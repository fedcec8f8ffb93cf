"""The benchmark's files are read back by torchvision exactly as written, in the official formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.datasets import CIFAR10, STL10

from bench.real_data import official_files, synthetic_pixels, upscale


def test_cifar10_batches_hold_the_pixels_in_order(tmp_path: Path) -> None:
    pixels = synthetic_pixels(23, 32, seed=1)
    with official_files(tmp_path, 32, pixels):
        dataset = CIFAR10(str(tmp_path), train=True, download=False)
    np.testing.assert_array_equal(dataset.data, pixels)
    assert dataset.targets == [index % 10 for index in range(23)]


def test_stl10_binaries_hold_the_pixels_labelled_then_unlabeled(tmp_path: Path) -> None:
    pixels = synthetic_pixels(41, 96, seed=2)
    with official_files(tmp_path, 96, pixels):
        dataset = STL10(str(tmp_path), split="train+unlabeled", download=False)
    # torchvision holds STL-10 as [N, 3, H, W]; a row/column mix-up would transpose every image.
    np.testing.assert_array_equal(dataset.data.transpose(0, 2, 3, 1), pixels)
    labelled = 41 // 20
    assert dataset.labels.tolist() == [index % 10 for index in range(labelled)] + [-1] * (41 - labelled)


def test_md5_checks_are_only_redirected_inside_the_context(tmp_path: Path) -> None:
    official = list(CIFAR10.train_list)
    with official_files(tmp_path, 32, synthetic_pixels(10, 32)):
        assert CIFAR10.train_list != official
    assert CIFAR10.train_list == official


def test_upscale_keeps_the_image_and_changes_only_its_size() -> None:
    flat = np.full((2, 32, 32, 3), 77, dtype=np.uint8)
    assert upscale(flat, 96).shape == (2, 96, 96, 3)
    assert (upscale(flat, 96) == 77).all()
