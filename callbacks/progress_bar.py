"""The rich progress bar, with numbers shown to four significant digits."""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class ReadableProgressBar(RichProgressBar):
    """Lightning rounds to three decimals, which shows a learning rate of 0.0047 as 0.000."""

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float]:
        metrics = super().get_metrics(trainer, pl_module)
        return {name: _significant(value) for name, value in metrics.items()}


def _significant(value: int | str | float) -> int | str | float:
    return f"{value:.4g}" if isinstance(value, float) else value
