"""Under DDP each rank reads its own share of an image folder of any sizes and draws its own views on
the batched path from files, reproducibly from (seed, rank, epoch, batch). `ddp_spawn` on gloo, as in
test_batched_views_ddp.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import ImageFolderDataModule
from datamodules.encoded import EncodedImages
from datamodules.sampling import ResumableBatchSampler
from tests.distributed.first_batches import first_batches_of_ranks
from tests.views.photos import write_photo_folder

PER_DEVICE_BATCH, SIDE, SEED, WORLD_SIZE = 4, 16, 11, 2

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*ddp_spawn.*")]


def test_ranks_read_disjoint_files_and_draw_independent_views(tmp_path: Path) -> None:
    sizes = [(20 + 5 * (n % 4), 30 - 3 * (n % 3)) for n in range(8)]  # 16 training images, varied
    root = write_photo_folder(tmp_path / "images", sizes, png_every=3)

    def datamodule() -> ImageFolderDataModule:
        return ImageFolderDataModule(
            str(root), batch_size=WORLD_SIZE * PER_DEVICE_BATCH, num_workers=0, image_size=SIDE,
            view_path="batched", probe_view=True,
        )  # fmt: skip

    recorded = first_batches_of_ranks(datamodule(), tmp_path, WORLD_SIZE, SEED)

    rebuilt = datamodule()
    rebuilt.setup("fit")
    files = rebuilt.train_dataset
    assert isinstance(files, EncodedImages)
    first_keys = []
    for rank in range(WORLD_SIZE):
        shard = EncodedImages(files.files, files.labels.numpy(), SEED, rank, augmenter=files.augmenter)
        sampler = ResumableBatchSampler(shard, WORLD_SIZE, rank, SEED, PER_DEVICE_BATCH, torch.device("cpu"))
        key = next(iter(sampler))
        first_keys.append(set(key.indices.tolist()))
        expected = shard[key]  # each rank's batch is a function of (seed, rank, epoch, batch) alone
        for name in ("view1", "view2", "probe_view", "label"):
            assert torch.equal(recorded[rank][name], expected[name]), f"rank {rank} {name}"
        other_rank = EncodedImages(
            files.files, files.labels.numpy(), SEED, 1 - rank, augmenter=files.augmenter
        )
        assert not torch.equal(other_rank[key]["view1"], expected["view1"])  # the rank seeds the views
    assert first_keys[0].isdisjoint(first_keys[1])  # disjoint shares of the files
