"""A steady training step of `train.py fit`, with every default callback, never waits for the device.

Host syncs (`.item()`, `float(t)`, boolean-mask indexing, nonzero) are counted with a TorchDispatchMode
per training batch, from one batch's start to the next's, in the main process (the data loader runs in
a worker process). Only logging steps may read values on the host.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
from torch.utils._python_dispatch import TorchDispatchMode

from cli import cli_main
from tests.op_counts import HOST_SYNC_OPS, aten_op_name
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder

BATCHES, FIRST_STEADY, STEADY_STEPS, LOG_EVERY = 24, 2, 20, 5


class MarkBatches(pl.Callback):
    """Tells the counting mode which steady training batch the ops it sees belong to."""

    current: int | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int):
        MarkBatches.current = idx if FIRST_STEADY <= idx < FIRST_STEADY + STEADY_STEPS else None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        MarkBatches.current = None


class SyncsPerBatch(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.syncs: Counter[int] = Counter()
        self.outside_steady_steps = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if aten_op_name(func, args) in HOST_SYNC_OPS:
            if MarkBatches.current is None:
                self.outside_steady_steps += 1
            else:
                self.syncs[MarkBatches.current] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch)


@pytest.mark.parametrize("micro_batch_size", ["null", "2"], ids=["one-pass", "micro-batches"])
def test_steady_training_steps_sync_only_when_they_log(tmp_path: Path, micro_batch_size: str) -> None:
    images = write_image_folder(tmp_path / "images", train_per_class=BATCHES * 2)  # batches of 4
    args = smoke_args(
        images, tmp_path / "run",
        "--data.num_workers", "1",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", str(BATCHES),
        "--trainer.log_every_n_steps", str(LOG_EVERY),
        "--trainer.callbacks+=tests.test_step_syncs.MarkBatches",
        "--model.micro_batch_size", micro_batch_size,
    )  # fmt: skip
    counter = SyncsPerBatch()
    with counter:
        cli_main(args)

    steady = set(range(FIRST_STEADY, FIRST_STEADY + STEADY_STEPS))
    logging = {idx for idx in steady if (idx + 1) % LOG_EVERY == 0}
    assert counter.outside_steady_steps > 0  # the counter sees syncs (set-up and validation have them)
    assert set(counter.syncs) <= logging, dict(counter.syncs)
    assert set(counter.syncs) == logging  # logging steps do read values, and are seen doing so
