"""One lister for every split, scan and command: FIFOs, sockets, hidden files and __MACOSX are skipped."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from datamodules import ImageFolderDataModule
from datamodules.listing import image_files, images_under
from evaluation.predict import image_paths
from tests.run_helpers import smoke_args, train_subprocess, write_image_folder


def add_macos_litter(root: Path) -> list[Path]:
    """What unzipping a macOS archive and browsing it in Finder add: each with an image extension."""
    litter = [
        root / "train" / "__MACOSX" / "a" / "._0.png",  # a whole metadata tree beside the classes
        root / "train" / "a" / "._1.png",  # AppleDouble file beside its image
        root / "val" / ".thumbnails" / "0.png",  # a hidden folder
        root / "train" / "b" / ".DS_Store",
    ]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x00\x05\x16\x07 AppleDouble metadata, not an image")
    return litter


def test_a_fifo_named_like_an_image_does_not_hang_a_run(tmp_path: Path) -> None:
    """Before, the native-size scan opened the FIFO and waited on it forever, before printing anything."""
    images = write_image_folder(tmp_path / "images")
    fifos = [images / "train" / "a" / "stream.jpg", images / "val" / "b" / "pipe.png"]
    for fifo in fifos:
        os.mkfifo(fifo)
    log = tmp_path / "train.log"
    args = smoke_args(images, tmp_path / "run", "--trainer.max_epochs", "1", "--trainer.logger", "false")
    process = train_subprocess(args, log)
    try:
        assert process.wait(timeout=180) == 0, log.read_text()
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        pytest.fail(f"the run hung on a FIFO:\n{log.read_text()[-2000:]}")
    output = log.read_text()
    for fifo in fifos:
        assert f"not regular files (FIFOs, sockets, devices, broken links) (e.g. '{fifo}')" in output


def test_special_files_are_skipped_by_every_listing(tmp_path: Path) -> None:
    images = write_image_folder(tmp_path / "images")
    os.mkfifo(images / "train" / "a" / "fifo.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(images / "train" / "b" / "socket.png"))
    (images / "train" / "b" / "dangling.jpg").symlink_to(images / "nowhere.jpg")
    try:
        listed = list(image_files([images / "train"]))
        special = ("fifo", "socket", "dangling")
        assert len(listed) == 16 and not any(name in path for path in listed for name in special)
        assert len(images_under(images / "train")) == 16  # evaluate.py predict's folders
        with pytest.raises(FileNotFoundError, match="is not a regular file"):
            image_paths([str(images / "train" / "a" / "fifo.jpg")])  # named on predict's command line
        datamodule = ImageFolderDataModule(str(images), batch_size=4, num_workers=0, image_size=16)
        with pytest.warns(UserWarning, match=r"Skipped 3 file\(s\) or folder\(s\) .*: 3 not regular files"):
            datamodule.setup("fit")
        assert len(datamodule.train_dataset) == 16
    finally:
        server.close()


def test_macos_litter_and_hidden_files_are_skipped_and_counted(tmp_path: Path) -> None:
    """Before, __MACOSX was taken for a class, and the first ._*.png stopped the run as unreadable."""
    images = write_image_folder(tmp_path / "images")
    litter = add_macos_litter(images)
    datamodule = ImageFolderDataModule(str(images), batch_size=4, num_workers=0, image_size=16)
    assert datamodule.class_names == ["a", "b"]
    with pytest.warns(UserWarning) as warned:
        datamodule.setup("fit")
    messages = [str(warning.message) for warning in warned]
    train_warning = next(m for m in messages if f"in '{images / 'train'}'" in m)
    assert "Skipped 3 file(s) or folder(s)" in train_warning
    assert "3 hidden or macOS metadata (names starting with '.', __MACOSX) (e.g. '" in train_warning
    val_warning = next(m for m in messages if f"in '{images / 'val'}'" in m)
    assert f"(e.g. '{litter[2].parent}')" in val_warning
    assert len(datamodule.train_dataset) == 16 and len(datamodule.val_dataset) == 4
    every_image = sorted(images.glob("*/[ab]/[0-9].png"))
    assert sorted(map(Path, image_files([images / "train", images / "val"]))) == every_image
    assert images_under(images) == every_image  # evaluate.py predict


def test_a_class_made_only_of_linked_folders_is_in_the_statistics(tmp_path: Path) -> None:
    """The native-size scan and the mean/std sample list what training lists, links followed: before,
    they walked without following links and saw no image of a class that is a link to its folder."""
    images = write_image_folder(tmp_path / "images", classes=("a",))
    elsewhere = tmp_path / "elsewhere"
    for split in ("train", "val"):
        (elsewhere / split).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (12, 12), (0, 0, 255)).save(elsewhere / split / f"{index}.png")
        (images / split / "blue").symlink_to(elsewhere / split, target_is_directory=True)
    listed = list(image_files([images / "train"]))
    assert len(listed) == 10 and sum("blue" in path for path in listed) == 2
