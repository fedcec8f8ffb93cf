from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.stl10

from datamodules import STL10DataModule
from datamodules.missing_files import MissingDatasetError
from datamodules.stl10 import STL10_CLASSES
from tests.datamodules.fake_data import WrittenDataset, unnormalise


def test_properties_need_no_files(tmp_path: Path) -> None:
    datamodule = STL10DataModule(str(tmp_path / "nowhere"), batch_size=8)
    assert datamodule.num_classes == 10 and datamodule.class_names == STL10_CLASSES
    assert datamodule.class_names[7] == "monkey"
    assert datamodule.image_size == 96
    assert datamodule.mean == (0.4467, 0.4398, 0.4066) and datamodule.std == (0.2603, 0.2566, 0.2713)


def test_pretraining_uses_train_and_unlabeled_with_minus_one_labels(stl10_root: WrittenDataset) -> None:
    torch.manual_seed(0)
    datamodule = STL10DataModule(
        str(stl10_root.root), batch_size=4, num_workers=0, pin_memory=False, view_path="per_image",
        val_holdout=0,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    train = datamodule.train_dataset
    assert len(train) == 16  # 6 labelled + 10 unlabeled
    expected_labels = stl10_root.train.labels.tolist() + [-1] * 10
    assert [train.images[i][1] for i in range(16)] == expected_labels  # untransformed: cheap to read all
    assert train[0]["label"] == expected_labels[0] and train[15]["label"] == -1

    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"view1", "view2", "label"}  # no probe view unless asked for
    assert batch["view1"].shape == batch["view2"].shape == (4, 3, 96, 96)
    assert batch["label"].dtype == torch.int64
    assert not torch.equal(batch["view1"], batch["view2"])


def test_eval_images_match_the_written_pixels_and_labels(stl10_root: WrittenDataset) -> None:
    # Exact pixel equality also proves the column-major on-disk layout is read the right way round.
    datamodule = STL10DataModule(
        str(stl10_root.root), batch_size=4, num_workers=0, pin_memory=False, val_holdout=0
    )
    datamodule.setup("validate")
    datamodule.setup("test")
    for loader in (datamodule.val_dataloader(), datamodule.test_dataloader()):
        images, labels = next(iter(loader))
        first = list(loader.sampler)[:4]  # the class-interleaved evaluation order (datamodules/sampling.py)
        assert images.shape == (4, 3, 96, 96)
        assert labels.tolist() == stl10_root.test.labels[first].tolist()
        restored = unnormalise(images, datamodule.mean, datamodule.std)
        np.testing.assert_array_equal(restored, stl10_root.test.images[first])


def test_unlabeled_pixels_are_read_in_order(stl10_root: WrittenDataset) -> None:
    datamodule = STL10DataModule(str(stl10_root.root), batch_size=4, num_workers=0, view_path="per_image")
    datamodule.setup("fit")
    image, label = datamodule.train_dataset.images[6]  # the first unlabeled image, before any transform
    assert label == -1
    np.testing.assert_array_equal(np.asarray(image), stl10_root.unlabeled.images[0])


def test_failed_download_names_the_folder_and_files_to_provide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(torchvision.datasets.stl10, "download_and_extract_archive", offline)
    with pytest.raises(MissingDatasetError) as raised:
        STL10DataModule(str(tmp_path), batch_size=8).prepare_data()
    message = str(raised.value)
    assert f"'{tmp_path / 'stl10_binary'}/'" in message and "train_X.bin" in message
    assert "unlabeled_X.bin" in message and "Network is unreachable" in message


def test_missing_files_without_download_fail_in_setup(tmp_path: Path) -> None:
    datamodule = STL10DataModule(str(tmp_path), batch_size=8, download=False)
    with pytest.raises(MissingDatasetError, match=r"stl10_binary/' with"):
        datamodule.setup("test")
