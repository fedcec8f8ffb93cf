import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.run_helpers import write_image_folder


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """4 classes, 48 training images of 40 px: one cpu-smoke batch of 32 per epoch."""
    classes = tuple(f"class_{k}" for k in range(4))
    return write_image_folder(tmp_path / "images", classes, 12, val_per_class=4, image_side=40)


@pytest.fixture
def one_cpu_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a busy shared CPU, two threads can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def lightning_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """caplog holding Lightning's INFO records (rank_zero_info: the run summary, the schedule note).

    Lightning stops its logger propagating when it is first imported before pytest captures logs, which
    happens when a conftest that imports it is loaded first; whether caplog saw its records then depended
    on which tests ran. Attached directly, with propagation off for the test, each record arrives once.
    """
    caplog.set_level(logging.INFO)
    lightning_logger = logging.getLogger("pytorch_lightning")
    monkeypatch.setattr(lightning_logger, "propagate", False)
    lightning_logger.addHandler(caplog.handler)
    yield caplog
    lightning_logger.removeHandler(caplog.handler)
