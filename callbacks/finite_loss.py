"""Stops training at the first non-finite loss, before a checkpoint can record the broken weights."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from reliability.errors import UserError


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the message names the step and the last good checkpoint."""


class StopOnNonFiniteLoss(pl.Callback):
    """Raises NonFiniteLossError when the training loss is NaN or infinite.

    Lightning runs ModelCheckpoint after every other callback, so the error stops the run before the
    weights the bad step produced are saved: the last checkpoint stays the last good one. Reading the
    loss costs one host sync per step, which the progress bar already pays when it shows the loss.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        value = float(loss.detach())
        if math.isfinite(value):
            return
        # Mixed precision can overflow where 32-bit does not; advising 32-true to a 32-bit run is no help.
        full_precision = str(trainer.precision) in ("32-true", "64-true", "32", "64")
        precision = "" if full_precision else ", or train with --trainer.precision 32-true"
        raise NonFiniteLossError(
            f"The training loss became {value} at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {batch_idx}); training stopped. {_last_good_checkpoint(trainer)} Lower --model.base_lr, "
            f"raise --model.warmup_epochs or --model.temperature{precision}."
        )


def _last_good_checkpoint(trainer: pl.Trainer) -> str:
    saved = [
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in (callback.last_model_path, callback.best_model_path)
        if path
    ]
    existing = [path for path in saved if Path(path).exists()]
    if not existing:
        return "No checkpoint had been saved yet."
    return f"The last good checkpoint is kept: {max(existing, key=lambda path: Path(path).stat().st_mtime)}."
