"""Shards against the image folder they came from, per core: converting, opening and reading them.

    python bench/shards.py                    # 1,000 ImageNet-like JPEGs, 9 rounds, a few minutes
    python bench/shards.py --json shards.json # also writes the machine block and the rows as JSON
    python bench/shards.py --smoke            # seconds, 40 images, 1 round (the test runs this)

The images (bench/photo_folder.py) are ImageNet-like JPEGs built in a temporary folder: photographs cut
to a short side of 300-500 px at quality 75-95. One thread (torch.set_num_threads(1)), one process,
everything on the local disk with a warm page cache, so what is measured is CPU work, not a network or
disk: the listing of millions of files over a network file system, which shards avoid, is not here.
The clock is CPU time (this process's, plus its worker process's for the conversion): the machine is
shared with other jobs, and only figures measured side by side in one process, in interleaved rounds,
compare; each is the median over the rounds.

Rows:
- convert: core-seconds per 10,000 images of `shards.py convert` with one worker (`default`: unchanged
  JPEGs keep their bytes, every image decoded once to check it; `max_side 256`: every image also scaled
  and re-encoded), beside `decode once` (load_rgb of every image, the least any reader of the folder
  pays), in turn in each round.
- open: CPU seconds until a datamodule knows its classes, labels, native size and mean/std, for the
  whole folder (ImageFolderDataModule lists the files, reads headers and decodes 1,000 images for
  mean/std) and for its shards (StreamingDataModule reads dataset.json); not per image: the listing
  grows with the folder, the mean/std estimate does not.
- read: images per core-second, decoding included (at full size, as the per-image training path decodes
  a file: views/crop_decode.py), in batches of 256: the folder's files in a random order (the per-image
  path of ImageFolderDataModule), the shards streamed (LitData's StreamingDataset in its shuffled order,
  what StreamingDataModule trains on), and the shards read by index in a random order (validation,
  evaluate.py); x_folder is over the folder's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Run as `python bench/shards.py`: make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.photo_folder import write_photo_folder  # noqa: E402
from bench.report import load_average, machine_info, markdown_table, write_json  # noqa: E402
from conversion.convert import ConvertSettings, convert  # noqa: E402
from datamodules import ImageFolderDataModule, StreamingDataModule  # noqa: E402
from datamodules.listing import image_folder  # noqa: E402
from datamodules.shard_reading import FULL_CHUNK_SHUFFLE, ONE_ITEM_AT_A_TIME  # noqa: E402
from views.crop_decode import ImageFile  # noqa: E402
from views.decode import load_rgb  # noqa: E402

READ_BATCH = 256


def cpu_seconds() -> float:
    """This process's CPU time (nanosecond clock) and that of its finished children (the conversion's
    worker; os.times counts those in 10 ms ticks, fine for seconds of work)."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


def timed(work: Callable[[], Any]) -> float:
    start = cpu_seconds()
    work()
    return cpu_seconds() - start


def interleaved(sources: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """CPU seconds of each source's work per round, the sources in turn within every round."""
    seconds: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(rounds):
        for name, work in sources.items():
            seconds[name].append(timed(work))
    return seconds


def conversion_rows(folder: Path, scratch: Path, images: int, rounds: int) -> list[dict[str, Any]]:
    paths = [path for path, _ in image_folder(folder / "train", None).samples]
    counter = iter(range(10**6))

    def converted(max_side: int | None) -> Callable[[], None]:
        def work() -> None:
            out = scratch / f"convert-{next(counter)}"
            with contextlib.redirect_stderr(io.StringIO()):  # the progress bars
                convert(folder, out, ConvertSettings(max_side=max_side, workers=1))
            shutil.rmtree(out)

        return work

    seconds = interleaved(
        {
            "decode once": lambda: [load_rgb(path).load() for path in paths],
            "convert, default": converted(None),
            "convert, max_side 256": converted(256),
        },
        rounds,
    )
    total = images + len(list((folder / "val").rglob("*.jpg")))
    baseline = statistics.median(seconds["decode once"]) * 10_000 / images
    rows = []
    for name, values in seconds.items():
        per_10k = statistics.median(values) * 10_000 / (images if name == "decode once" else total)
        rows.append({"measure": "convert", "pipeline": name, "core_s_per_10k_images": per_10k,
                     "x_decode_once": per_10k / baseline, "rounds": values})  # fmt: skip
    return rows


def opening_rows(folder: Path, shards: Path, rounds: int) -> list[dict[str, Any]]:
    def folder_module() -> None:
        module = ImageFolderDataModule(str(folder), batch_size=256, num_workers=0, image_size=224)
        (module.class_names, module.mean, module.image_size, module.train_images().targets)

    def shard_module() -> None:
        module = StreamingDataModule(str(shards), batch_size=256, num_workers=0, image_size=224)
        (module.class_names, module.mean, module.image_size, module.train_images().targets)

    seconds = interleaved({"image folder": folder_module, "shards": shard_module}, rounds)
    return [{"measure": "open", "pipeline": name, "cpu_s": statistics.median(values), "rounds": values}
            for name, values in seconds.items()]  # fmt: skip


def cycle(make: Callable[[], Iterator[Any]]) -> Iterator[Any]:
    while True:
        yield from make()


def reading_rows(folder: Path, shards: Path, rounds: int) -> list[dict[str, Any]]:
    """Every source decodes as the per-image training path does (views/crop_decode.py, full size)."""
    from litdata import StreamingDataset

    rng = np.random.default_rng(0)
    files = [path for path, _ in image_folder(folder / "train", None).samples]
    location = str(shards / "train")
    by_index = StreamingDataset(location, batch_decode=ONE_ITEM_AT_A_TIME)
    streamed = StreamingDataset(
        location,
        shuffle=True,
        seed=0,
        item_shuffle_window=FULL_CHUNK_SHUFFLE,
        batch_decode=ONE_ITEM_AT_A_TIME,
    )

    def shuffled(count: int) -> Iterator[int]:
        return cycle(lambda: iter(rng.permutation(count).tolist()))

    def decoded(item: dict[str, Any]) -> Any:
        return ImageFile.of_bytes(item["image"], item["path"]).decode()

    folder_order, shard_order = shuffled(len(files)), shuffled(len(by_index))
    stream = cycle(lambda: iter(streamed))
    sources: dict[str, Callable[[], Any]] = {
        "image folder, by index": lambda: [
            ImageFile.open(files[next(folder_order)]).decode() for _ in range(READ_BATCH)
        ],
        "shards, streamed": lambda: [decoded(next(stream)) for _ in range(READ_BATCH)],
        "shards, by index": lambda: [decoded(by_index[next(shard_order)]) for _ in range(READ_BATCH)],
    }
    for work in sources.values():  # warm-up: opens readers, fills the page cache
        work()
    seconds = interleaved(sources, rounds)
    baseline = READ_BATCH / statistics.median(seconds["image folder, by index"])
    rows = []
    for name, values in seconds.items():
        rate = READ_BATCH / statistics.median(values)
        rows.append({"measure": "read", "pipeline": name, "images_per_core_s": rate,
                     "x_folder": rate / baseline, "rounds": values})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="ImageNet-like training images to build")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds; figures are medians")
    parser.add_argument("--json", type=Path, default=None, help="also write the machine block and rows here")
    parser.add_argument("--smoke", action="store_true", help="40 images, 1 round: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.rounds = 40, 1
    torch.set_num_threads(1)
    command = "python bench/shards.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), torch.device("cpu"))
    with tempfile.TemporaryDirectory(prefix="simclr-bench-shards-") as scratch:
        folder = Path(scratch) / "images"
        summary = write_photo_folder(folder, args.images)
        shards = Path(scratch) / "shards"
        with contextlib.redirect_stderr(io.StringIO()):
            convert(folder, shards, ConvertSettings(workers=1))
        rows = [
            *conversion_rows(folder, Path(scratch), args.images, args.rounds),
            *opening_rows(folder, shards, args.rounds),
            *reading_rows(folder, shards, args.rounds),
        ]
    machine["load_average_end"] = load_average()
    images = summary.describe()
    print(
        f"{images}; {machine['cpu']}; load {machine['load_average_start']} -> {machine['load_average_end']}"
    )
    columns = ["measure", "pipeline", "core_s_per_10k_images", "x_decode_once", "cpu_s", "images_per_core_s",
               "x_folder"]  # fmt: skip
    print(markdown_table(rows, columns))
    if args.json is not None:
        write_json(args.json, machine, rows, images=images)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"took {time.perf_counter() - started:.0f} s")
