"""The rich progress bar, showing the training metrics of the last logging step to four significant digits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar

from callbacks.logging_steps import is_logging_step

SHOWN_METRICS = ("train/loss", "train/lr", "views/s")


class ReadableProgressBar(RichProgressBar):
    """Shows `metrics` as of the last logging step, and rounds to four significant digits.

    Lightning's own bar reads every `prog_bar=True` value on the host after every step, which makes the
    host wait for the device each step. This bar reads the named metrics from `trainer.callback_metrics`
    on logging steps only (see callbacks/logging_steps.py) and shows those values until the next one.
    Lightning rounds to three decimals, which shows a learning rate of 0.0047 as 0.000.

    Args:
        metrics: names of logged metrics to show (any that were not logged yet are left out).
        refresh_rate, leave: as RichProgressBar.
    """

    def __init__(self, metrics: Sequence[str] = SHOWN_METRICS, refresh_rate: int = 1, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.metrics = tuple(metrics)
        self._training_values: dict[str, str] = {}
        self._shown: dict[str, int | str | float] | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if is_logging_step(trainer, batch_idx, after_optimizer_step=True):
            logged = trainer.callback_metrics
            self._training_values = {
                name: _significant(float(logged[name])) for name in self.metrics if name in logged
            }
            self._shown = None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float]:
        # Between logging steps nothing shown changes: the bar reuses what it showed.
        if self._shown is None or not trainer.training:
            metrics = super().get_metrics(trainer, pl_module)
            shown = {name: _significant(value) for name, value in metrics.items()}
            self._shown = {**shown, **self._training_values}
        return self._shown


def _significant(value: int | str | float) -> int | str | float:
    return f"{value:.4g}" if isinstance(value, float) else value
