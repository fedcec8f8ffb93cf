"""Under DDP each rank draws its own view parameters on the batched path, reproducibly from the seed.

Every training image is the same image, so two views can differ only through their parameters: ranks
that shared a generator state (the classic bug: one seed, the default generator on every rank) would
produce identical batches. `ddp_spawn` on gloo, as in test_ddp_equivalence.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from datamodules.sampling import ResumableBatchSampler
from datamodules.uint8_cache import CachedImages
from tests.datamodules.in_memory import InMemoryDataModule
from tests.distributed.process_group import DestroyProcessGroupAtTeardown

IMAGES, PER_DEVICE_BATCH, SIDE, SEED, WORLD_SIZE = 16, 4, 16, 11, 2

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*ddp_spawn.*")]


class OneImageDataModule(InMemoryDataModule):
    """IMAGES copies of one random image, labelled by index, on the default (batched) path."""

    class_names = [str(i) for i in range(IMAGES)]

    def _pretrain_images(self) -> Dataset:
        image = torch.randint(0, 256, (3, SIDE, SIDE), generator=torch.Generator().manual_seed(0))
        return [(image.to(torch.uint8), index) for index in range(IMAGES)]


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


def test_ranks_draw_independent_views_reproducible_from_the_seed(tmp_path: Path) -> None:
    pl.seed_everything(SEED)
    datamodule = OneImageDataModule(
        "unused", batch_size=WORLD_SIZE * PER_DEVICE_BATCH, num_workers=0, probe_view=True
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=WORLD_SIZE, strategy="ddp_spawn", max_steps=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[DestroyProcessGroupAtTeardown()],
    )  # fmt: skip
    trainer.fit(RecordFirstBatch(tmp_path), datamodule=datamodule)
    recorded = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]

    labels = [batch["label"].tolist() for batch in recorded]
    assert set(labels[0]).isdisjoint(labels[1])  # disjoint shares of the images
    for name in ("view1", "view2", "probe_view"):
        per_sample_difference = (recorded[0][name] - recorded[1][name]).abs().flatten(1).amax(dim=1)
        assert (per_sample_difference > 0.1).all(), f"{name}: ranks drew the same parameters"

    # Each rank's batch is a function of (seed, rank, epoch, batch) alone: rebuilt here, in one process.
    rebuilt = OneImageDataModule(
        "unused", batch_size=WORLD_SIZE * PER_DEVICE_BATCH, num_workers=0, probe_view=True
    )
    rebuilt.setup("fit")
    cached = rebuilt.train_dataset
    assert isinstance(cached, CachedImages)
    for rank in range(WORLD_SIZE):
        shard = CachedImages(cached.images, cached.labels, SEED, rank, cached.augmenter)
        sampler = ResumableBatchSampler(shard, WORLD_SIZE, rank, SEED, PER_DEVICE_BATCH, torch.device("cpu"))
        expected = shard[next(iter(sampler))]
        for name in ("view1", "view2", "probe_view", "label"):
            assert torch.equal(recorded[rank][name], expected[name]), f"rank {rank} {name}"
