"""Under DDP each rank streams its own share of the shards on the batched path for images of any size
and draws its own views, reproducibly from (seed, epoch, the batch's first image): the streamed
counterpart of test_file_views_ddp.py. `ddp_spawn` on gloo, as there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import StreamingDataModule
from datamodules.shard_reading import EncodedShardBatch, ShardEncodedImages, ShardLoader, set_distributed_env
from tests.distributed.first_batches import first_batches_of_ranks
from tests.shard_helpers import shards_of
from tests.views.photos import write_photo_folder

PER_DEVICE_BATCH, SIDE, SEED, WORLD_SIZE = 4, 16, 11, 2

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*ddp_spawn.*")]


def test_ranks_stream_disjoint_images_and_draw_independent_views(tmp_path: Path) -> None:
    sizes = [(20 + 5 * (n % 4), 30 - 3 * (n % 3)) for n in range(8)]  # 16 training images, varied
    shards = shards_of(write_photo_folder(tmp_path / "images", sizes), tmp_path / "shards")

    def datamodule() -> StreamingDataModule:
        return StreamingDataModule(
            str(shards), batch_size=WORLD_SIZE * PER_DEVICE_BATCH, num_workers=0, image_size=SIDE,
            view_path="batched", probe_view=True, pin_memory=False,
        )  # fmt: skip

    recorded = first_batches_of_ranks(datamodule(), tmp_path, WORLD_SIZE, SEED)

    first_images, seeds = [], []
    for rank in range(WORLD_SIZE):  # each rank's first batch, rebuilt in this process
        rebuilt = datamodule()
        rebuilt.setup("fit")
        stream = rebuilt.train_dataset
        assert isinstance(stream, ShardEncodedImages)
        set_distributed_env(stream, WORLD_SIZE, rank, 1)
        expected = next(iter(ShardLoader(stream, lambda: 0, batch_size=PER_DEVICE_BATCH)))
        for name in ("view1", "view2", "probe_view", "label"):
            assert torch.equal(recorded[rank][name], expected[name]), f"rank {rank} {name}"
        stream.collate = EncodedShardBatch(SEED, None)  # the same batch as bytes, names and its seed
        encoded = next(iter(ShardLoader(stream, lambda: 0, batch_size=PER_DEVICE_BATCH)))
        first_images.append(set(encoded["name"]))
        seeds.append(encoded["view_seed"])
    assert first_images[0].isdisjoint(first_images[1]) and seeds[0] != seeds[1]
    assert not torch.equal(recorded[0]["view1"], recorded[1]["view1"])
