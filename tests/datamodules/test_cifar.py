from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar

from datamodules import CIFAR10DataModule, CIFAR100DataModule
from datamodules.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from datamodules.missing_files import MissingDatasetError
from tests.datamodules.fake_data import WrittenDataset, unnormalise


def test_cifar10_properties_need_no_files(tmp_path: Path) -> None:
    datamodule = CIFAR10DataModule(str(tmp_path / "nowhere"), batch_size=8)
    assert datamodule.num_classes == 10 and datamodule.class_names == CIFAR10_CLASSES
    assert datamodule.image_size == 32
    assert datamodule.mean == (0.4914, 0.4822, 0.4465) and datamodule.std == (0.2470, 0.2435, 0.2616)


def test_cifar100_properties_need_no_files(tmp_path: Path) -> None:
    datamodule = CIFAR100DataModule(str(tmp_path / "nowhere"), batch_size=8, image_size=64)
    assert datamodule.num_classes == 100 and datamodule.class_names[:3] == ["apple", "aquarium_fish", "baby"]
    assert len(set(CIFAR100_CLASSES)) == 100
    assert datamodule.image_size == 64
    assert datamodule.mean == (0.5071, 0.4865, 0.4409) and datamodule.std == (0.2673, 0.2564, 0.2762)


@pytest.mark.parametrize(
    ("module_class", "fixture"), [(CIFAR10DataModule, "cifar10_root"), (CIFAR100DataModule, "cifar100_root")]
)
def test_train_split_pretrains_and_test_split_evaluates(
    module_class: type[CIFAR10DataModule], fixture: str, request: pytest.FixtureRequest
) -> None:
    torch.manual_seed(0)
    written: WrittenDataset = request.getfixturevalue(fixture)
    # val_holdout=0: the old protocol, validation on the test split (tests/datamodules/test_holdout.py
    # covers the held-out slice).
    datamodule = module_class(
        str(written.root), batch_size=8, num_workers=0, pin_memory=False, view_path="per_image", val_holdout=0
    )
    datamodule.prepare_data()  # files are present and intact: no download is attempted
    datamodule.setup("fit")

    train = datamodule.train_dataset
    assert len(train) == 20
    assert [train[i]["label"] for i in range(20)] == written.train.labels.tolist()
    batches = list(datamodule.train_dataloader())
    assert len(batches) == 2  # 20 images, batch 8, drop_last
    batch = batches[0]
    assert set(batch) == {"view1", "view2", "label"}  # no probe view unless asked for
    assert batch["view1"].shape == batch["view2"].shape == (8, 3, 32, 32)
    assert not torch.equal(batch["view1"], batch["view2"])

    val_loader = datamodule.val_dataloader()
    images, labels = next(iter(val_loader))
    first = list(val_loader.sampler)[:8]  # the class-interleaved evaluation order (datamodules/sampling.py)
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert labels.tolist() == written.test.labels[first].tolist()
    restored = unnormalise(images, datamodule.mean, datamodule.std)
    np.testing.assert_array_equal(restored, written.test.images[first])

    datamodule.setup("test")
    test_images, test_labels = next(iter(datamodule.test_dataloader()))
    assert torch.equal(test_images, images) and torch.equal(test_labels, labels)


def test_eval_view_is_resized_when_a_larger_image_size_is_asked(cifar10_root: WrittenDataset) -> None:
    datamodule = CIFAR10DataModule(
        str(cifar10_root.root), batch_size=4, num_workers=0, image_size=48, val_holdout=0
    )
    datamodule.setup("validate")
    image, label = datamodule.val_dataset[0]
    assert image.shape == (3, 48, 48) and label == cifar10_root.test.labels[0]
    assert torch.equal(image, datamodule.val_dataset[0][0])


def test_failed_download_names_the_folder_to_provide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    datamodule = CIFAR10DataModule(str(tmp_path), batch_size=8)
    with pytest.raises(MissingDatasetError) as raised:
        datamodule.prepare_data()
    message = str(raised.value)
    assert f"'{tmp_path / 'cifar-10-batches-py'}/'" in message
    assert "cifar-10-python.tar.gz" in message and "name resolution" in message


def test_missing_files_without_download_name_the_folder_to_provide(tmp_path: Path) -> None:
    datamodule = CIFAR100DataModule(str(tmp_path), batch_size=8, download=False)
    datamodule.prepare_data()  # download=False: nothing is fetched, the check happens in setup
    expected = r"cifar-100-python/' with train, test, meta.*cifar-100-python\.tar\.gz"
    with pytest.raises(MissingDatasetError, match=expected):
        datamodule.setup("fit")


def test_corrupted_files_are_reported_not_loaded(tmp_path: Path) -> None:
    # Files with the right names but the wrong md5 (the real torchvision checksums are not patched here).
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(b"truncated")
    datamodule = CIFAR10DataModule(str(tmp_path), batch_size=8, download=False)
    with pytest.raises(MissingDatasetError, match="missing or corrupted"):
        datamodule.setup("validate")
