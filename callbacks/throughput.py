"""Views per second in the progress bar: the speed figure that stays comparable across batch sizes."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import pytorch_lightning as pl

VIEWS_PER_IMAGE = 2


class ViewsPerSecond(pl.Callback):
    """Shows `views/s` (augmented views through the encoder per second, all devices) in the progress bar.

    Measured on the host between batch ends over a window of steps, with no device sync of its own:
    the progress bar already waits for the loss every step, so the host cannot run ahead of the
    device by more than a step and the window average is the device's throughput.
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
        images = batch["view1"].shape[0] * trainer.world_size
        seconds = (self._batch_ends[-1] - self._batch_ends[0]) / (len(self._batch_ends) - 1)
        pl_module.log("views/s", VIEWS_PER_IMAGE * images / seconds, prog_bar=True, logger=False)
