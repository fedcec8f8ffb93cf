"""Loss and accuracy curves of a run as a PNG in its folder, whatever logger (or none) is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from evaluation.plots import log_images_to_wandb, plot_training_curves

CURVES_FILENAME = "curves.png"
# Step-level values that are not curves worth a panel: the learning rate has its own monitor.
SKIPPED_METRICS = ("train/lr",)


class TrainingCurves(pl.Callback):
    """Records train/* metrics every `log_every_n_steps` steps and val/* metrics after each validation,
    and redraws curves.png in the run folder after each validation; W&B gets it at the end of fit.

    The history is part of the checkpoint, so a resumed run continues its curves.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[tuple[int, float]]] = {}

    def _record(self, trainer: pl.Trainer, prefix: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix) and name not in SKIPPED_METRICS and value.numel() == 1:
                self.history.setdefault(name, []).append((trainer.global_step, float(value)))

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._record(trainer, "train/")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._record(trainer, "val/")
        self._draw(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = self._draw(trainer)
        if path is not None:
            log_images_to_wandb(trainer.loggers, {"curves": path})

    def _draw(self, trainer: pl.Trainer) -> Path | None:
        # fast_dev_run writes nothing.
        if not trainer.is_global_zero or not self.history or trainer.fast_dev_run:
            return None
        return plot_training_curves(self.history, Path(trainer.default_root_dir) / CURVES_FILENAME)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {name: list(points) for name, points in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {
            name: [tuple(point) for point in points] for name, points in state_dict["history"].items()
        }
