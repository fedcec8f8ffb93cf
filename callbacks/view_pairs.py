"""A picture of what the model trains on: the augmented view pairs of the first training batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from evaluation.plots import log_images_to_wandb, plot_view_pairs

VIEW_PAIRS_FILENAME = "view_pairs.png"


class ViewPairsGrid(pl.Callback):
    """Writes view_pairs.png into the run folder (and to W&B) from the first batch a fit sees.

    Too strong or too weak augmentation is the commonest SimCLR mistake, and it is obvious in a
    picture long before it shows in the loss.

    Args:
        max_pairs: how many images of the batch to show (0 turns the picture off).
    """

    def __init__(self, max_pairs: int = 16) -> None:
        super().__init__()
        self.max_pairs = max_pairs
        self._done = False

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._done or self.max_pairs == 0 or trainer.fast_dev_run:  # fast_dev_run writes nothing
            return
        self._done = True
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        path = plot_view_pairs(
            batch["view1"],
            batch["view2"],
            datamodule.mean,
            datamodule.std,
            Path(trainer.default_root_dir) / VIEW_PAIRS_FILENAME,
            self.max_pairs,
            batch.get("small_views"),
        )
        log_images_to_wandb(trainer.loggers, {"views/pairs": path})
