"""Callbacks (and a datamodule) that hold a training subprocess where a test wants to signal it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl

from datamodules import ImageFolderDataModule
from reliability.stop_signals import stop_requested_by

MAX_PAUSE_SECONDS = 300


class PauseOnce(pl.Callback):
    """At the start of the batch after `step`, writes `marker` and waits (once: the marker stays)."""

    def __init__(self, step: int, marker: str) -> None:
        self.step = step
        self.marker = Path(marker)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        self.marker.write_text(str(self.step))
        deadline = time.monotonic() + MAX_PAUSE_SECONDS
        while stop_requested_by() is None and not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)


class PauseInValidation(PauseOnce):
    """Like PauseOnce, but in the first validation batch after `step` (workers of the val loader running)."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        return None

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int, *_) -> None:
        if trainer.sanity_checking:
            return
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


class PauseInSanityCheck(PauseOnce):
    """Like PauseOnce, but in the first batch of the start-up sanity check (before any training step)."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        return None

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int, *_) -> None:
        if trainer.sanity_checking:
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


class PauseAfterStopSignal(PauseOnce):
    """Like PauseOnce, and once the stop signal is taken, writes `marker`.stopping and waits again: a step
    that takes long to finish, during which a second Ctrl-C must stop the run at once."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step or self.marker.exists():
            return
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        Path(f"{self.marker}.stopping").write_text(str(self.step))
        time.sleep(MAX_PAUSE_SECONDS)


class ImageFolderPausedInSetup(ImageFolderDataModule):
    """Waits in setup, where an image folder is scanned, after writing the file named by $PAUSE_MARKER."""

    def setup(self, stage: str) -> None:
        Path(os.environ["PAUSE_MARKER"]).write_text(stage)
        time.sleep(MAX_PAUSE_SECONDS)
        super().setup(stage)


class PauseOnRankZero(PauseOnce):
    """PauseOnce on global rank 0 only: the other ranks wait for it in the step's gradient all-reduce, as
    they do when rank 0 is slow (several ranks pausing would race for the one marker file)."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.is_global_zero:
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
