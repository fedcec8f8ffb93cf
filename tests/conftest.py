from pathlib import Path

import pytest

from tests.image_folder import write_image_folder


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")
