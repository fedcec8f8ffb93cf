"""The run summary's data line counts images, not batches, and says which view path the run takes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from callbacks.run_summary import _batch_line, _data_line
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


@pytest.mark.parametrize(
    ("micro_batch_size", "split"),
    [(64, "each device in 4 forward passes of 64 (--model.micro_batch_size; loss over the whole batch"),
     (None, None), (256, None)],
)  # fmt: skip
def test_batch_line_says_how_micro_batches_split_each_device(micro_batch_size, split) -> None:
    trainer = SimpleNamespace(
        world_size=2, accumulate_grad_batches=1, num_training_batches=10, estimated_stepping_batches=100,
        optimizers=[],
    )  # fmt: skip
    module = SimpleNamespace(hparams={"micro_batch_size": micro_batch_size})
    line = _batch_line(trainer, SimpleNamespace(batch_size=512), module)
    assert line.startswith("global 512 = 2 x 256, ")
    assert (split in line) if split else ("forward passes" not in line)
