"""A callback that writes, per rank, the image indices of every training batch of every epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class RecordIndices(pl.Callback):
    """For batches that carry "index" (tests.shard_helpers.IndexedStreamingDataModule): writes
    `folder/rank<R>.json`, a list per epoch of the batches' index lists, when training ends."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.seen: list[list[list[int]]] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen.append([])

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        self.seen[-1].append(batch["index"].tolist())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
