"""Multi-crop on streamed shards: the small views come out of both view paths as from an image folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules import ImageFolderDataModule, StreamingDataModule
from tests.shard_helpers import shards_of, write_jpeg_folder

BATCH = 4


@pytest.mark.parametrize("view_path", ["per_image", "batched"])
def test_streamed_batches_carry_the_small_views_of_every_image(tmp_path: Path, view_path: str) -> None:
    folder = write_jpeg_folder(tmp_path / "images", ("cat", "dog", "eel"), {"train": 8, "val": 2})
    shards = shards_of(folder, tmp_path / "shards")
    settings = dict(batch_size=BATCH, num_workers=0, pin_memory=False, view_path=view_path)
    multi_crop = dict(num_small_views=3, small_view_size=8)
    streamed = StreamingDataModule(str(shards), **settings, **multi_crop)  # type: ignore[arg-type]
    streamed.setup("fit")
    first, again = (list(streamed.train_dataloader()) for _ in range(2))
    for batch in first:
        small = batch["small_views"]
        assert small.shape == (3, BATCH, 3, 8, 8) and small.dtype == torch.float32
        assert batch["view1"].shape == (BATCH, 3, 16, 16)
        assert not torch.equal(small[0], small[1])  # each small view its own crop and colour
    for one, two in zip(first, again, strict=True):  # the same epoch again: the same small views
        assert torch.equal(one["small_views"], two["small_views"])
    folder_module = ImageFolderDataModule(str(folder), **settings, **multi_crop)  # type: ignore[arg-type]
    folder_module.setup("fit")
    assert next(iter(folder_module.train_dataloader()))["small_views"].shape == first[0]["small_views"].shape
