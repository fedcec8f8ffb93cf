from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import ImageFolderDataModule
from tests.datamodules.fake_data import unnormalise
from tests.run_helpers import write_image_folder
from views.decode import load_rgb

# One solid-colour image per mode, so the expected RGB value survives any resize and crop.
# (mode, size, file name, how to build it, the RGB it must load as)
PALETTE = [255, 0, 0, 0, 128, 255, 9, 9, 9] + [0] * 759


def _palette_image(size: tuple[int, int]) -> Image.Image:
    image = Image.new("P", size, 1)
    image.putpalette(PALETTE)
    # Per-entry alpha (tRNS as bytes) is the case where PIL warns on a direct P -> RGB conversion.
    image.info["transparency"] = bytes([0, 255, 100])
    return image


SOLID_IMAGES = [
    ("grey.png", lambda: Image.new("L", (40, 30), 77), (77, 77, 77)),
    ("rgba.png", lambda: Image.new("RGBA", (25, 50), (10, 200, 30, 90)), (10, 200, 30)),
    ("palette.png", lambda: _palette_image((64, 64)), (0, 128, 255)),
    ("rgb.jpg", lambda: Image.new("RGB", (33, 33), (240, 16, 128)), (240, 16, 128)),
    ("cmyk.tif", lambda: Image.new("CMYK", (48, 36), (0, 255, 255, 0)), (255, 0, 0)),
]
CLASSES = ["cat", "dog"]


def write_tree(root: Path, splits: tuple[str, ...] = ("train", "val"), classes: list[str] = CLASSES) -> None:
    for split in splits:
        for class_name in classes:
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for file_name, build, _ in SOLID_IMAGES:
                build().save(folder / file_name, quality=100, subsampling=0)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write_tree(tmp_path)
    return tmp_path


def make(root: Path, **kwargs: object) -> ImageFolderDataModule:
    return ImageFolderDataModule(str(root), batch_size=4, num_workers=0, pin_memory=False, **kwargs)  # type: ignore[arg-type]


def test_properties_come_from_the_class_folders_right_after_init(tree: Path) -> None:
    datamodule = make(tree, image_size=224)  # images of mixed sizes: no native size to default to
    assert datamodule.class_names == CLASSES and datamodule.num_classes == 2
    assert datamodule.image_size == 224


def test_mean_and_std_can_be_overridden_and_are_hyperparameters(tree: Path) -> None:
    datamodule = make(tree, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), image_size=64)
    assert datamodule.mean == (0.1, 0.2, 0.3) and datamodule.std == (0.4, 0.5, 0.6)
    assert datamodule.hparams.mean == (0.1, 0.2, 0.3) and datamodule.hparams.image_size == 64
    with pytest.raises(ValueError, match="3 values"):
        make(tree, mean=(0.5, 0.5), std=(0.2, 0.2, 0.2), image_size=64)


@pytest.mark.parametrize(("file_name", "expected_rgb"), [(name, rgb) for name, _, rgb in SOLID_IMAGES])
def test_every_mode_loads_as_rgb(tree: Path, file_name: str, expected_rgb: tuple[int, int, int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = load_rgb(str(tree / "train" / "cat" / file_name))
    assert image.mode == "RGB"
    np.testing.assert_allclose(np.asarray(image)[0, 0], expected_rgb, atol=2)


def test_eval_samples_are_centre_crops_with_the_written_colours(tree: Path) -> None:
    datamodule = make(tree, image_size=32)
    datamodule.setup("validate")
    loader = datamodule.val_dataloader()
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32)
    # ImageFolder sorts files: cmyk.tif, grey.png, palette.png, rgb.jpg, rgba.png per class; the
    # loader serves them in its seeded class-interleaved order (datamodules/sampling.py).
    expected = dict((name, rgb) for name, _, rgb in SOLID_IMAGES)
    files = ["cmyk.tif", "grey.png", "palette.png", "rgb.jpg", "rgba.png"]
    first = list(loader.sampler)[:4]  # indices into cat/0-4, dog/5-9
    order = [files[index % len(files)] for index in first]
    restored = unnormalise(images, datamodule.mean, datamodule.std)
    for image, name in zip(restored, order, strict=True):
        np.testing.assert_allclose(image, np.broadcast_to(expected[name], image.shape), atol=2)
    assert labels.tolist() == [index // len(files) for index in first]
    assert set(labels.tolist()) == {0, 1}  # both classes in the first batch
    assert torch.equal(datamodule.val_dataset[0][0], datamodule.val_dataset[0][0])


def test_training_batches_mix_sizes_and_modes_into_the_contract(tree: Path) -> None:
    torch.manual_seed(0)
    datamodule = make(tree, image_size=32)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 2  # 10 images, batch 4, drop_last
    for batch in batches:
        assert set(batch) == {"view1", "view2", "label"}  # no probe view unless asked for
        assert batch["view1"].shape == batch["view2"].shape == (4, 3, 32, 32)
        assert not torch.equal(batch["view1"], batch["view2"])
    labels = [datamodule.train_dataset[i]["label"] for i in range(10)]
    assert labels == [0] * 5 + [1] * 5


def test_test_split_is_used_when_present_else_val(tmp_path: Path) -> None:
    write_tree(tmp_path, splits=("train", "val"))
    (tmp_path / "test" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "test" / "cat" / "only.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "test" / "dog" / "only.png")
    datamodule = make(tmp_path, image_size=16)
    datamodule.setup("test")
    assert len(datamodule.test_dataset) == 2

    shutil.rmtree(tmp_path / "test")
    fallback = make(tmp_path, image_size=16)
    fallback.setup("test")
    assert len(fallback.test_dataset) == 10


def test_a_test_split_alone_also_validates(tmp_path: Path) -> None:
    write_tree(tmp_path, splits=("train", "test"))
    datamodule = make(tmp_path, image_size=16, val_holdout=0)
    datamodule.setup("validate")
    assert len(datamodule.val_dataset) == 10
    # By default a slice of train validates instead (10% of 10 images), and test stays the test split.
    held_out = make(tmp_path, image_size=16)
    held_out.setup("validate")
    assert len(held_out.val_dataset) == 1


def test_missing_root_names_it_and_the_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist.*<root>/train/<class_name>"):
        _ = make(tmp_path / "nowhere").num_classes


def test_missing_eval_split_is_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"Neither .*val' nor .*test' exists"):
        _ = make(tmp_path).num_classes


def test_split_without_class_folders_is_reported(tmp_path: Path) -> None:
    write_tree(tmp_path, splits=("val",))
    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "stray.png")
    with pytest.raises(FileNotFoundError, match=r"No class folders found in .*train'"):
        _ = make(tmp_path).num_classes


def test_empty_class_folder_is_named(tree: Path) -> None:
    (tree / "train" / "empty_class").mkdir()
    (tree / "train" / "empty_class" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match=r"without images in .*train'.*\['empty_class'\]"):
        _ = make(tree).num_classes


def test_images_in_nested_folders_count(tree: Path) -> None:
    nested = tree / "train" / "bird" / "batch_1"
    nested.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(nested / "deep.png")
    with pytest.raises(ValueError, match=r"val' differ .*missing: \['bird'\], extra: \[\]"):
        _ = make(tree).num_classes


def test_split_with_different_classes_is_rejected(tree: Path) -> None:
    (tree / "val" / "dog").rename(tree / "val" / "wolf")
    with pytest.raises(ValueError, match=r"missing: \['dog'\], extra: \['wolf'\]"):
        _ = make(tree).num_classes


def test_without_a_test_folder_the_test_split_warns_that_it_is_the_validation_split(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train_val", image_side=16)
    datamodule = ImageFolderDataModule(str(root), batch_size=4, num_workers=0)
    with pytest.warns(UserWarning, match="has no test/ folder, so test/\\* reports on val/"):
        datamodule.setup("test")
    (root / "val").rename(root / "test")  # now val/* comes from a held-out slice of train/
    separate = ImageFolderDataModule(str(root), batch_size=4, num_workers=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        separate.setup("test")
    assert separate.test_dataset.root == str(root / "test")
