"""Views per second in the progress bar: the speed figure that stays comparable across batch sizes."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytorch_lightning as pl

from callbacks.logging_steps import is_logging_step

VIEWS_PER_IMAGE = 2


class ViewsPerSecond(pl.Callback):
    """Reports `views/s` (augmented views through the encoder per second, all devices) for the progress bar.

    Measured on the host between batch ends over a window of steps, with no device sync of its own. The
    host can run ahead of the device only until something waits for it (a logging step, or the data
    loader's pinned-memory copies), so over a window of steps the figure is the device's throughput.
    Logged on logging steps only, as a callback metric (not sent to the loggers).
    """

    def __init__(self, window: int = 20) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window={window} must be >= 1 step.")
        self._batch_ends: deque[float] = deque(maxlen=window + 1)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation and epoch boundaries are not training time.
        self._batch_ends.clear()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batch_ends.append(time.perf_counter())
        if len(self._batch_ends) < 2 or not isinstance(batch, dict) or "view1" not in batch:
            return
        if not is_logging_step(trainer, batch_idx, after_optimizer_step=True):
            return
        images = batch["view1"].shape[0] * trainer.world_size
        # Small multi-crop views count as views too, whatever their size (views.multicrop).
        views = VIEWS_PER_IMAGE + (batch["small_views"].shape[0] if "small_views" in batch else 0)
        seconds = (self._batch_ends[-1] - self._batch_ends[0]) / (len(self._batch_ends) - 1)
        pl_module.log("views/s", views * images / seconds, logger=False)
