"""Under DDP each rank draws its own view parameters on the batched path, reproducibly from the seed.

Every training image is the same image, so two views can differ only through their parameters: ranks
that shared a generator state (the classic bug: one seed, the default generator on every rank) would
produce identical batches. `ddp_spawn` on gloo, as in test_ddp_equivalence.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from datamodules.sampling import ResumableBatchSampler
from datamodules.uint8_cache import CachedImages
from tests.datamodules.in_memory import InMemoryDataModule
from tests.distributed.first_batches import first_batches_of_ranks

IMAGES, PER_DEVICE_BATCH, SIDE, SEED, WORLD_SIZE = 16, 4, 16, 11, 2

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*ddp_spawn.*")]


class OneImageDataModule(InMemoryDataModule):
    """IMAGES copies of one random image, labelled by index, on the default (batched) path."""

    class_names = [str(i) for i in range(IMAGES)]

    def _pretrain_images(self) -> Dataset:
        image = torch.randint(0, 256, (3, SIDE, SIDE), generator=torch.Generator().manual_seed(0))
        return [(image.to(torch.uint8), index) for index in range(IMAGES)]


def test_ranks_draw_independent_views_reproducible_from_the_seed(tmp_path: Path) -> None:
    datamodule = OneImageDataModule(
        "unused", batch_size=WORLD_SIZE * PER_DEVICE_BATCH, num_workers=0, probe_view=True
    )
    recorded = first_batches_of_ranks(datamodule, tmp_path, WORLD_SIZE, SEED)

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
