"""Stops training at the first non-finite loss, before a checkpoint can record the broken weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from callbacks.logging_steps import is_logging_step
from reliability.errors import UserError

NOT_SEEN = -1


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the message names the step and the last good checkpoint."""


class StopOnNonFiniteLoss(pl.Callback):
    """Raises NonFiniteLossError when the training loss has been NaN or infinite.

    Reading the loss every step would make the host wait for the device every step. Instead the first
    non-finite loss and its step are recorded on the device, and read on logging steps and before every
    checkpoint is written (on_save_checkpoint runs before the file is saved), so no checkpoint ever holds
    the weights a bad step produced: the last checkpoint stays the last good one.
    """

    def __init__(self) -> None:
        super().__init__()
        # Step and value of the first non-finite loss; the step stays NOT_SEEN while every loss is finite.
        self._first_bad_step: torch.Tensor | None = None
        self._first_bad_value: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        self._record(loss.detach().float(), trainer.global_step)
        if is_logging_step(trainer, batch_idx, after_optimizer_step=True):
            self._raise_if_seen(trainer)

    def _record(self, loss: torch.Tensor, step: int) -> None:
        if self._first_bad_step is None:
            self._first_bad_step = torch.full((), NOT_SEEN, dtype=torch.long, device=loss.device)
            self._first_bad_value = torch.zeros((), device=loss.device)
        first = (self._first_bad_step == NOT_SEEN) & ~torch.isfinite(loss)
        self._first_bad_step = torch.where(first, step, self._first_bad_step)
        self._first_bad_value = torch.where(first, loss, self._first_bad_value)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._raise_if_seen(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._raise_if_seen(trainer)

    def _raise_if_seen(self, trainer: pl.Trainer) -> None:
        if self._first_bad_step is None:
            return
        step = int(self._first_bad_step)
        if step == NOT_SEEN:
            return
        # Mixed precision can overflow where 32-bit does not; advising 32-true to a 32-bit run is no help.
        full_precision = str(trainer.precision) in ("32-true", "64-true", "32", "64")
        precision = "" if full_precision else ", or train with --trainer.precision 32-true"
        raise NonFiniteLossError(
            f"The training loss became {float(self._first_bad_value)} at step {step} (epoch "
            f"{trainer.current_epoch}); training stopped. {_last_good_checkpoint(trainer)} Lower "
            f"--model.base_lr, raise --model.warmup_epochs or --model.temperature{precision}."
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
