"""Each rank's first training batch of a real 2-process fit (`ddp_spawn` on gloo), for the tests that
check ranks draw disjoint images and independent views on every view path."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from tests.distributed.process_group import DestroyProcessGroupAtTeardown


class RecordFirstBatch(pl.LightningModule):
    """Saves each rank's first training batch; one parameter so that DDP has something to reduce."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.weight = nn.Parameter(torch.zeros(()))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        if batch_idx == 0:
            torch.save(batch, self.folder / f"rank{self.global_rank}.pt")
        return self.weight * batch["view1"].mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def first_batches_of_ranks(
    datamodule: pl.LightningDataModule, folder: Path, world_size: int, seed: int
) -> list[dict[str, Tensor]]:
    """One step of a `world_size`-process fit; each rank's first batch, in rank order."""
    pl.seed_everything(seed)
    trainer = pl.Trainer(
        accelerator="cpu", devices=world_size, strategy="ddp_spawn", max_steps=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[DestroyProcessGroupAtTeardown()],
    )  # fmt: skip
    trainer.fit(RecordFirstBatch(folder), datamodule=datamodule)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(world_size)]
