from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule
from datamodules.folder_stats import distinct_sizes, estimate_mean_std
from datamodules.listing import image_files
from reliability.errors import UserError


def write_folder(root: Path, sizes: dict[str, tuple[int, int]], per_class: int = 3) -> np.ndarray:
    """root/{train,test}/<class>/*.png of random pixels; the training pixels [N, H, W, 3] when one size."""
    rng = np.random.default_rng(0)
    train_pixels = []
    for split in ("train", "test"):
        for class_name, (width, height) in sizes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
                if split == "train":
                    train_pixels.append(pixels)
    return np.stack(train_pixels) if len(set(sizes.values())) == 1 else np.zeros(0)


def make(root: Path, **kwargs: object) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), batch_size=2, num_workers=0, val_holdout=0, **kwargs)  # type: ignore[arg-type]


def test_one_square_size_is_the_native_size_and_evaluation_keeps_every_pixel(tmp_path: Path) -> None:
    pixels = write_folder(tmp_path, {"a": (12, 12), "b": (12, 12)})
    datamodule = make(tmp_path)
    assert datamodule.image_size == datamodule.native_image_size == 12

    # mean/std estimated from the training pixels (all 6 images: the sample exceeds the folder).
    expected_mean = pixels.reshape(-1, 3).mean(axis=0) / 255
    expected_std = pixels.reshape(-1, 3).std(axis=0) / 255
    np.testing.assert_allclose(datamodule.mean, expected_mean, atol=1e-4)
    np.testing.assert_allclose(datamodule.std, expected_std, atol=1e-4)
    assert datamodule.resolved_arguments() == {
        "val_holdout": 0, "image_size": 12, "mean": list(datamodule.mean), "std": list(datamodule.std),
    }  # fmt: skip

    # No Resize + CenterCrop: the evaluation view is the image itself, normalised.
    with pytest.warns(UserWarning, match="TEST split"):
        datamodule.setup("validate")
    image, _ = datamodule.val_dataset[0]
    first = np.asarray(Image.open(tmp_path / "test" / "a" / "0.png"), dtype=np.float32) / 255
    mean, std = torch.tensor(datamodule.mean), torch.tensor(datamodule.std)
    expected = (torch.from_numpy(first).permute(2, 0, 1) - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(image, expected)


def test_given_statistics_are_kept(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": (8, 8), "b": (8, 8)})
    datamodule = make(tmp_path, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert datamodule.mean == (0.1, 0.2, 0.3) and datamodule.std == (0.4, 0.5, 0.6)


def test_mixed_sizes_need_an_image_size_and_the_error_names_two(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": (12, 12), "b": (20, 16)})
    two_sizes = r"'.*a/0\.png' is 12x12 and '.*b/0\.png' is 20x16.*--data\.image_size"
    with pytest.raises(UserError, match=two_sizes) as raised:
        make(tmp_path)
    assert "\n" not in str(raised.value)
    datamodule = make(tmp_path, image_size=16)
    assert datamodule.image_size == 16 and datamodule.native_image_size is None


def test_one_non_square_size_needs_an_image_size(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": (12, 8), "b": (12, 8)})
    with pytest.raises(UserError, match="Non-square images.*12x8"):
        make(tmp_path)


def test_the_size_scan_stops_at_the_second_size(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": (12, 12), "b": (20, 16), "c": (12, 12)})
    read = []

    def counted():
        for path in image_files([tmp_path / "train"]):
            read.append(path)
            yield path

    assert [size for size, _ in distinct_sizes(counted())] == [(12, 12), (20, 16)]
    assert len(read) == 4  # a/0-2, then b/0: the rest of the folder is never opened


def test_estimate_is_seeded_when_it_samples(tmp_path: Path) -> None:
    write_folder(tmp_path, {"a": (8, 8), "b": (8, 8)}, per_class=5)
    paths = list(image_files([tmp_path / "train"]))
    assert estimate_mean_std(paths, seed=1, sample_size=4) == estimate_mean_std(paths, seed=1, sample_size=4)
    assert estimate_mean_std(paths, seed=1, sample_size=4) != estimate_mean_std(paths, seed=2, sample_size=4)
