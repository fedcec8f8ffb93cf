from __future__ import annotations

from collections.abc import Iterator

import pytest
import wandb


@pytest.fixture(autouse=True)
def _every_test_on_one_cpu_thread(one_cpu_thread: None) -> None:
    """tests/conftest.py's one_cpu_thread for every test here."""


@pytest.fixture(autouse=True)
def fresh_wandb_session() -> Iterator[None]:
    """W&B keeps the settings of its first session (e.g. WANDB_MODE=disabled) for the whole process;
    ending it after each test lets a later test's WANDB_MODE take effect."""
    yield
    wandb.teardown()
