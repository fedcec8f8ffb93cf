"""An image folder (train/ and val/ and/or test/) as LitData shards of JPEG bytes, with dataset.json.

Worker processes decode and re-encode (conversion/encode.py); the main process writes the items in a
seeded random order with LitData's BinaryWriter, so the output is the same for the same input and
settings whatever the number of workers. The random order matters for training: LitData shuffles
chunks and the items inside each chunk, so a batch holds images of one or two chunks; written in
folder order, a chunk would hold a class or two and so would every batch. Labels follow
torchvision's ImageFolder (class folders sorted), the same labels ImageFolderDataModule gives.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from litdata import complete_dataset
from litdata.streaming.writer import BinaryWriter
from tqdm import tqdm

from conversion.encode import EncodedImage, encode_image
from conversion.staging import refuse_existing, staged_output
from datamodules.folder_stats import PixelSums, mean_std, stats_sample
from datamodules.imagefolder import scan_layout
from datamodules.listing import image_folder
from datamodules.shard_info import INFO_FILENAME, SPLITS, ImageSize, ShardInfo, SplitInfo

# Images handed to a worker at a time: large enough to amortise the inter-process round trip.
TASKS_PER_MESSAGE = 8


@dataclass(frozen=True)
class ConvertSettings:
    max_side: int | None = None
    quality: int = 90
    workers: int = 1
    chunk_bytes: str = "64MB"
    seed: int = 0


@dataclass(frozen=True)
class SplitListing:
    """One split's image files, in the order they are written (a seeded permutation of the folder's)."""

    name: str
    folder: Path
    paths: list[str]
    labels: np.ndarray
    measured: np.ndarray  # [N] bool: in the seeded sample whose pixels give mean/std (train only)


def convert(root: Path, out: Path, settings: ConvertSettings) -> ShardInfo:
    """Writes `out` (which must not exist) and returns what its dataset.json says."""
    refuse_existing(out)
    layout = scan_layout(root)  # the checks training makes: layout, classes, same classes in every split
    listings = [_listing(root / name, name, settings.seed) for name in SPLITS if (root / name).is_dir()]
    started = time.perf_counter()
    # The workers start before the output folder's lock is taken, so they never hold it.
    with multiprocessing.get_context("fork").Pool(settings.workers) as pool, staged_output(out) as staging:
        splits, sums = {}, []
        for listing in listings:
            splits[listing.name], split_sums = _write_split(pool, listing, staging / listing.name, settings)
            sums = split_sums if listing.name == "train" else sums
        if not sums:
            raise ValueError(f"'{root}' has no training images to measure mean and std on.")
        mean, std = mean_std(sums)
        conversion = {
            "source": str(root.resolve()),
            "max_side": settings.max_side,
            "quality": settings.quality,
            "chunk_bytes": settings.chunk_bytes,
            "seed": settings.seed,
            "seconds": round(time.perf_counter() - started, 1),
        }
        info = ShardInfo(list(layout.class_names), splits, mean, std, conversion)
        (staging / INFO_FILENAME).write_text(info.to_json())  # last: its presence marks a complete dataset
    counts = ", ".join(f"{len(split)} {name}" for name, split in splits.items())
    print(f"Wrote {counts} images to '{out}' in {conversion['seconds']:.0f} s.", file=sys.stderr)
    return info


def _listing(folder: Path, name: str, seed: int) -> SplitListing:
    samples = image_folder(folder, transform=None).samples
    order = np.random.default_rng([seed, SPLITS.index(name)]).permutation(len(samples))
    measured = np.zeros(len(samples), dtype=bool)
    if name == "train":
        measured[stats_sample(len(samples))] = True  # the sample ImageFolderDataModule estimates from
    return SplitListing(
        name,
        folder,
        [samples[i][0] for i in order],
        np.asarray([samples[i][1] for i in order], dtype=np.int64),
        measured[order],
    )


def _encode_task(task: tuple[str, int | None, int, bool]) -> EncodedImage:
    return encode_image(*task)


def _write_split(
    pool: Any, listing: SplitListing, folder: Path, settings: ConvertSettings
) -> tuple[SplitInfo, list[PixelSums]]:
    """Encodes in the workers, writes in order here; returns the split's info and its pixel sums."""
    folder.mkdir()
    writer = BinaryWriter(str(folder), chunk_bytes=settings.chunk_bytes)
    tasks = [
        (path, settings.max_side, settings.quality, bool(measured))
        for path, measured in zip(listing.paths, listing.measured, strict=True)
    ]
    sizes: dict[tuple[int, int], str] = {}
    sums: list[PixelSums] = []
    progress = tqdm(total=len(tasks), desc=f"{listing.name:>5}", unit="img", file=sys.stderr, mininterval=1.0)
    with progress:
        encoded_images = pool.imap(_encode_task, tasks, chunksize=TASKS_PER_MESSAGE)
        for index, (encoded, path, label) in enumerate(
            zip(encoded_images, listing.paths, listing.labels, strict=True)
        ):
            relative = os.path.relpath(path, listing.folder)
            writer[index] = {"image": encoded.data, "label": int(label), "path": relative}
            if len(sizes) < 2:
                sizes.setdefault((encoded.width, encoded.height), relative)
            if encoded.pixel_sums is not None:
                sums.append(encoded.pixel_sums)
            progress.update()
    writer.done()
    complete_dataset(str(folder))  # LitData's index.json, merged from the writer's
    examples = [ImageSize(width, height, example) for (width, height), example in sizes.items()]
    return SplitInfo(listing.labels, examples), sums
