from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import wandb


@pytest.fixture(autouse=True)
def one_cpu_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a busy shared CPU, two threads can be 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def fresh_wandb_session() -> Iterator[None]:
    """W&B keeps the settings of its first session (e.g. WANDB_MODE=disabled) for the whole process;
    ending it after each test lets a later test's WANDB_MODE take effect."""
    yield
    wandb.teardown()
