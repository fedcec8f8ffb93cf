"""The run summary's data line counts images, not batches, and says which view path the run takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbacks.run_summary import _data_line
from datamodules import CIFAR10DataModule
from tests.datamodules.fake_data import write_cifar10

EXPECTED_VIEWS = {
    "batched": "batched (all 20 training images are 32x32; views made on the CPU)",
    "per_image": "per_image (--data.view_path per_image)",
}


@pytest.mark.parametrize("view_path", sorted(EXPECTED_VIEWS))
def test_data_line_counts_training_images_on_both_view_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, view_path: str
) -> None:
    root = write_cifar10(tmp_path, monkeypatch).root
    datamodule = CIFAR10DataModule(str(root), batch_size=8, num_workers=0, view_path=view_path, val_holdout=0)
    datamodule.setup("fit")
    # 20 images make 2 batches of 8: the batched training set must not report 2.
    assert _data_line(datamodule).endswith(
        f", 20 training images, 10 classes, 32 px, views {EXPECTED_VIEWS[view_path]}"
    )


def test_data_line_says_how_many_training_images_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_cifar10(tmp_path, monkeypatch).root
    datamodule = CIFAR10DataModule(
        str(root), batch_size=8, num_workers=0, view_path="per_image", val_holdout=0.5
    )
    datamodule.setup("fit")
    expected = "20 training images (10 of them held out for val/*, pretrained on without labels), 10 classes"
    assert expected in _data_line(datamodule)
