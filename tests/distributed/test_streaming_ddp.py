"""`train.py fit` on 2 gloo processes with 2 DataLoader workers each, streaming shards: every training
image goes to exactly one rank once per epoch, each rank trains the batches LitData's plan assigns it,
and the ranks stay in step (the same number of batches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datamodules.shard_reading import ShardLoader, set_distributed_env
from tests.distributed.test_train_ddp import train
from tests.run_helpers import REPOSITORY
from tests.shard_helpers import IndexedStreamingDataModule, shards_of, write_jpeg_folder

IMAGES, PER_DEVICE_BATCH, WORLD_SIZE, WORKERS, EPOCHS = 24, 3, 2, 2, 2

pytestmark = pytest.mark.slow


def test_each_image_goes_to_one_rank_once_per_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_jpeg_folder(tmp_path / "images", ("a", "b", "c"), {"train": IMAGES // 3, "val": 2})
    shards = shards_of(folder, tmp_path / "shards")
    recorder = {
        "class_path": "tests.distributed.record_indices.RecordIndices",
        "init_args": {"folder": str(tmp_path)},
    }
    output = train(
        tmp_path,
        "--config", str(REPOSITORY / "configs" / "imagefolder.yaml"),
        "--config", str(REPOSITORY / "configs" / "cpu-smoke.yaml"),
        "--data", "tests.shard_helpers.IndexedStreamingDataModule",
        "--data.root", str(shards),
        "--data.view_path", "per_image",
        "--data.batch_size", str(WORLD_SIZE * PER_DEVICE_BATCH),
        "--data.num_workers", str(WORKERS),
        "--trainer.devices", str(WORLD_SIZE),
        "--trainer.strategy", "ddp",
        "--trainer.max_epochs", str(EPOCHS),
        "--trainer.limit_train_batches", "1.0",
        "--trainer.limit_val_batches", "1",
        "--trainer.logger", "false",
        "--trainer.callbacks+", json.dumps(recorder),
    )  # fmt: skip
    assert "global batch 6 = 2 device(s) x 3 images" in output
    assert f", {IMAGES} training images, 3 classes" in output  # the split, not one rank's share
    recorded = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    (run,) = (tmp_path / "runs").iterdir()
    monkeypatch.setenv(
        "PL_GLOBAL_SEED", str(yaml.safe_load((run / "config.yaml").read_text())["seed_everything"])
    )
    for epoch in range(EPOCHS):
        per_rank = [
            [index for batch in recorded[rank][epoch] for index in batch] for rank in range(WORLD_SIZE)
        ]
        assert len(per_rank[0]) == len(per_rank[1])
        assert sorted(per_rank[0] + per_rank[1]) == list(range(IMAGES)), f"epoch {epoch}"
        for rank in range(WORLD_SIZE):  # LitData's plan for the rank, rebuilt in this process
            single = IndexedStreamingDataModule(
                str(shards), batch_size=PER_DEVICE_BATCH, view_path="per_image"
            )
            single.setup("fit")
            set_distributed_env(single.train_dataset, WORLD_SIZE, rank, 1)
            loader = ShardLoader(
                single.train_dataset, lambda e=epoch: e, batch_size=PER_DEVICE_BATCH, num_workers=WORKERS
            )
            assert [batch["index"].tolist() for batch in loader] == recorded[rank][epoch], f"rank {rank}"
    assert recorded[0][0] != recorded[0][1]
