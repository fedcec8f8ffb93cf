"""Tiny image folders of JPEGs and their shards, for the conversion and StreamingDataModule tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from conversion.convert import ConvertSettings, convert
from datamodules import StreamingDataModule
from datamodules.shard_reading import ShardTrainingViews

# Small chunks, so that even a few dozen images make several and LitData's chunk shuffle has work to do.
SMALL_CHUNKS = "2KB"


def write_jpeg_folder(
    root: Path,
    classes: tuple[str, ...] = ("a", "b"),
    per_class: dict[str, int] | None = None,
    side: int = 16,
    seed: int = 0,
) -> Path:
    """root/<split>/<class>/NN.jpg of noisy class colours; `per_class` maps split to images per class."""
    rng = np.random.default_rng(seed)
    for split, count in (per_class or {"train": 12, "val": 2}).items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                base = np.array([40 + 60 * label, 200 - 50 * label, 90 + 30 * (index % 3)])
                pixels = np.clip(base + rng.integers(-30, 30, size=(side, side, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:02d}.jpg", quality=90)
    return root


def shards_of(folder: Path, out: Path, chunk_bytes: str = SMALL_CHUNKS, **settings: object) -> Path:
    """`shards.py convert folder out`, in this process, with one worker process unless told."""
    options = {"workers": 1, "chunk_bytes": chunk_bytes, **settings}
    convert(folder, out, ConvertSettings(**options))  # type: ignore[arg-type]
    return out


class IndexedTrainingViews(ShardTrainingViews):
    """The real training items, plus the index of the image each came from, for tests to read."""

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        return {**super().__getitem__(index), "index": index.index}


class IndexedStreamingDataModule(StreamingDataModule):
    """StreamingDataModule whose training batches also carry each image's index ("index": [B])."""

    def _build_train_dataset(self):  # type: ignore[no-untyped-def]
        dataset = super()._build_train_dataset()
        dataset.__class__ = IndexedTrainingViews
        return dataset
