"""Without internet, CIFAR and STL-10 say what to do instead of "run once with download=True"."""

from __future__ import annotations

import tarfile
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from datamodules import CIFAR10DataModule
from datamodules.missing_files import MissingDatasetError, OfficialArchive, explain_missing_files
from tests.datamodules.fake_data import md5_of, write_cifar10

TOY = OfficialArchive("Toy", "https://example.org/data/toy.tar.gz", "toy-batches", ["a.bin", "b.bin"])


def no_network(*args: object, **kwargs: object) -> None:
    raise URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("downloading", [True, False])
def test_the_message_says_what_to_do_without_internet(downloading: bool) -> None:
    error = OSError("no route to host") if downloading else RuntimeError("Dataset not found or corrupted.")
    with pytest.raises(MissingDatasetError) as raised, explain_missing_files(TOY, "/data/toy", downloading):
        raise error
    message = str(raised.value)
    assert str(error) in message and raised.value.__cause__ is error and "\n" not in message
    assert "download=True" not in message  # the default, and what just failed
    assert "download https://example.org/data/toy.tar.gz, copy toy.tar.gz into '/data/toy'" in message
    assert "'/data/toy/toy-batches/' with a.bin, b.bin" in message
    assert ("could not be downloaded" in message) is downloading


def test_an_archive_that_does_not_verify_after_download_is_named_for_deletion() -> None:
    with pytest.raises(MissingDatasetError) as raised, explain_missing_files(TOY, "/data/toy", True):
        raise RuntimeError("File not found or corrupted.")
    assert "does not verify" in str(raised.value) and "delete '/data/toy/toy.tar.gz'" in str(raised.value)


def test_offline_cifar_names_the_archive_and_the_advice_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real torchvision download path, with every network access failing as on a machine offline."""
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(MissingDatasetError) as raised:
        CIFAR10DataModule(str(root), batch_size=4, num_workers=0).prepare_data()
    message = str(raised.value)
    assert f"CIFAR-10 could not be downloaded into '{root}'" in message and "name resolution" in message
    assert f"download {CIFAR10.url}, copy cifar-10-python.tar.gz into '{root}' here and run again" in message
    assert not root.exists()  # no empty folder left behind

    # The advice: the archive, fetched elsewhere, copied into the root; still no network.
    written = write_cifar10(tmp_path, monkeypatch)
    root.mkdir(parents=True)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / CIFAR10.base_folder, arcname=CIFAR10.base_folder)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5_of(root / "cifar-10-python.tar.gz"))
    datamodule = CIFAR10DataModule(str(root), batch_size=4, num_workers=0, val_holdout=0)
    datamodule.prepare_data()
    image, label = datamodule._pretrain_images()[7]
    np.testing.assert_array_equal(np.asarray(image), written.train.images[7])
    assert label == written.train.labels[7]


def test_a_failed_download_leaves_no_empty_folders_behind(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    root = tmp_path / "data" / "cifar10"
    with pytest.raises(MissingDatasetError), explain_missing_files(TOY, str(root), True):
        root.mkdir(parents=True)  # what torchvision does before it tries to download
        raise OSError("no route to host")
    assert not (tmp_path / "data").exists() and kept.is_dir()
    (root / "partial").mkdir(parents=True)
    with pytest.raises(MissingDatasetError), explain_missing_files(TOY, str(root), True):
        raise OSError("no route to host")
    assert (root / "partial").is_dir()  # a folder that existed before is never touched
