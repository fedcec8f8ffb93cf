from pathlib import Path

import pytest

from tests.run_helpers import write_image_folder


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """4 classes, 48 training images of 40 px: one cpu-smoke batch of 32 per epoch."""
    classes = tuple(f"class_{k}" for k in range(4))
    return write_image_folder(tmp_path / "images", classes, 12, val_per_class=4, image_side=40)
