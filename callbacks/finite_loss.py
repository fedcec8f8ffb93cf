"""Stops training at the first non-finite loss, before a checkpoint can record the broken weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from callbacks.logging_steps import is_logging_step
from reliability.errors import UserError

# A run that logs rarely still checks at least every this many steps, which bounds the losses kept.
MAX_UNCHECKED_STEPS = 1000


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite; the message names the step and the last good checkpoint."""


class StopOnNonFiniteLoss(pl.Callback):
    """Raises NonFiniteLossError when the training loss has been NaN or infinite.

    Reading the loss every step would make the host wait for the device every step. Instead each step's
    loss is kept (a reference, no device work) and the losses since the last check are checked together,
    in one read, on logging steps and before every checkpoint is written (on_save_checkpoint runs before
    the file is saved), so no checkpoint ever holds the weights a bad step produced: the last checkpoint
    stays the last good one.
    """

    def __init__(self) -> None:
        super().__init__()
        # The losses of the steps since the last check, and the global step each was reached at.
        self._unchecked_losses: list[torch.Tensor] = []
        self._unchecked_steps: list[int] = []
        # Step and value of the first non-finite loss once a check has found one.
        self._first_bad: tuple[int, float] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        self._unchecked_losses.append(loss.detach())
        self._unchecked_steps.append(trainer.global_step)
        logging = is_logging_step(trainer, batch_idx, after_optimizer_step=True)
        if logging or len(self._unchecked_losses) >= MAX_UNCHECKED_STEPS:
            self._raise_if_seen(trainer)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._raise_if_seen(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._raise_if_seen(trainer)

    def _raise_if_seen(self, trainer: pl.Trainer) -> None:
        if self._first_bad is None:
            self._first_bad = self._check_unchecked()
        if self._first_bad is None:
            return
        step, value = self._first_bad
        # Mixed precision can overflow where 32-bit does not; advising 32-true to a 32-bit run is no help.
        full_precision = str(trainer.precision) in ("32-true", "64-true", "32", "64")
        precision = "" if full_precision else ", or train with --trainer.precision 32-true"
        raise NonFiniteLossError(
            f"The training loss became {value} at step {step} (epoch "
            f"{trainer.current_epoch}); training stopped. {_last_good_checkpoint(trainer)} Lower "
            f"--model.base_lr, raise --model.warmup_epochs or --model.temperature{precision}."
        )

    def _check_unchecked(self) -> tuple[int, float] | None:
        """Step and value of the first non-finite loss among the unchecked ones (None when all are finite:
        one host read); the checked ones are dropped."""
        if not self._unchecked_losses:
            return None
        losses = torch.stack(self._unchecked_losses).float()
        steps, self._unchecked_losses, self._unchecked_steps = self._unchecked_steps, [], []
        bad = ~torch.isfinite(losses)
        if not bool(bad.any()):
            return None
        first = int(bad.int().argmax())  # argmax returns the first of equal maxima
        return steps[first], float(losses[first])


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
