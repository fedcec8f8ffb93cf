from __future__ import annotations

from pathlib import Path

import pytest

from tests.datamodules.fake_data import WrittenDataset, write_cifar10, write_cifar100, write_stl10


@pytest.fixture
def cifar10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    return write_cifar10(tmp_path, monkeypatch)


@pytest.fixture
def cifar100_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    return write_cifar100(tmp_path, monkeypatch)


@pytest.fixture
def stl10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WrittenDataset:
    return write_stl10(tmp_path, monkeypatch)
