"""Reading shards with LitData: training views streamed chunk by chunk, and images by index.

Training streams: LitData's StreamingDataset assigns whole batches' worth of chunk intervals to every
rank and DataLoader worker (every image at most once per epoch, all ranks the same number of batches),
shuffles the chunks with (seed, epoch) and the items inside each chunk, and reads each chunk with one
request (StreamedShards). ShardTrainingViews turns each item into the SimCLR views (per-image path),
drawn from a generator seeded with (run seed, epoch, image index); ShardEncodedImages reads each item
as an image folder's file is read for the batched path of images of any size, and its collate seeds a
batch's views with (run seed, epoch, first image). Either way the views do not depend on the rank, the
worker or an interruption, so a resumed run trains on exactly the views the uninterrupted one did.

Resuming is ours, not Lightning's: Lightning restores a loader's state only after the loader was
built (pytorch-lightning #20550, hit by every configure_optimizers that reads
estimated_stepping_batches, as ours does), so ShardLoader ignores the state Lightning hands it and the
datamodule replays the position it saved itself, (epoch, batches trained in it), through LitData's
own replay (`resume_at`). The epoch always comes from Lightning's loop, so a reloaded loader or a
partial epoch (`--trainer.limit_train_batches`) cannot shift LitData's epoch count.

Validation, test, the held-out slice and evaluate.py read images by index (ShardImages);
from an object store LitData then fetches only the bytes of each image (two ranged reads).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.sampler import ChunkedIndex
from litdata.utilities.env import _DistributedEnv
from PIL import Image
from torch.utils.data import Dataset

from datamodules.encoded import encoded_batch
from datamodules.sampling import view_seed
from reliability.errors import UserError
from views.any_size import AnySizeViewAugmenter
from views.crop_decode import ImageFile
from views.jpeg import read_encoded
from views.per_image import PilProbeView, PilSimCLRView
from views.per_image_dataset import NormaliseViews, views_of_file

# LitData shuffles blocks of this many items inside a chunk, then the items of each block; 0 is a
# full permutation of the chunk, so the images batched together change from epoch to epoch.
FULL_CHUNK_SHUFFLE = 0
# Items LitData deserializes at once: 0 is only the one read. Its default takes a window of ~200 for
# items it does not recognise as images (ours are bytes), and reads in a shuffled order refill it for
# almost every item: 0.27 ms per image instead of 0.014 (one core, ImageNet-like JPEGs).
ONE_ITEM_AT_A_TIME = 0


class UnreadableShardImageError(UserError):
    """A shard item whose bytes do not decode: a damaged shard file."""


def decode_shard_image(data: bytes, where: str) -> Image.Image:
    """The RGB image of a shard item's JPEG bytes (shards.py stores only upright RGB or grey JPEGs)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableShardImageError(
            f"Image '{where}' in the shards cannot be decoded ({type(error).__name__}: {error}); the shard "
            "file is damaged. Convert the image folder again (python shards.py convert)."
        ) from error


class ShardImages(Dataset):
    """(image, label) by index, `transform(image)` when a transform is given; labels from dataset.json.

    The LitData dataset is opened by each process that reads (a DataLoader worker forked after the main
    process read would otherwise share its open chunk file, and with it the file offset), and `targets`
    lists every label without reading an image (holdout.dataset_labels, the kNN bank).
    """

    def __init__(
        self,
        location: str,
        labels: np.ndarray,
        options: dict[str, Any],
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.location = location
        self.targets = labels
        self.options = options
        self.transform = transform
        self._dataset: StreamingDataset | None = None
        self._opened_by: int | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not 0 <= index < len(self.targets):
            raise IndexError(f"index {index} is out of range for {len(self.targets)} images")
        if self._dataset is None or self._opened_by != os.getpid():
            dataset = StreamingDataset(self.location, batch_decode=ONE_ITEM_AT_A_TIME, **self.options)
            self._dataset, self._opened_by = dataset, os.getpid()
        item = self._dataset[int(index)]
        image = decode_shard_image(item["image"], f"{self.location}/{item['path']}")
        return (image if self.transform is None else self.transform(image)), int(self.targets[index])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None, "_opened_by": None}


class StreamedShards(StreamingDataset):
    """The training shards streamed in LitData's (seed, epoch) shuffled order, drop-last batches per
    worker; `labels` replaces the stored labels (the held-out validation images carry -1). `collate`
    is the loader's collate_fn for the items of a subclass."""

    collate: Callable[[list[Any]], Any]

    def __init__(self, location: str, labels: np.ndarray, seed: int, options: dict[str, Any]) -> None:
        super().__init__(
            location,
            shuffle=True,
            drop_last=True,
            seed=seed,
            item_shuffle_window=FULL_CHUNK_SHUFFLE,
            batch_decode=ONE_ITEM_AT_A_TIME,
            **options,
        )
        self.labels = labels

    def read(self, index: ChunkedIndex | int) -> tuple[bytes, str, int]:
        """An item's JPEG bytes, where it is (for messages) and its index in the split."""
        item = super().__getitem__(index)
        position = index.index if isinstance(index, ChunkedIndex) else int(index)
        return item["image"], f"{self.input_dir.url or self.input_dir.path}/{item['path']}", position


class ShardTrainingViews(StreamedShards):
    """The training shards as SimCLR view dicts {"view1", "view2"[, "probe_view"]: uint8 [S, S, 3], "label"
    [, "small_views": uint8 [N, s, s, 3]]},
    normalised into batches by `collate` (NormaliseViews), as the per-image path does."""

    def __init__(
        self,
        location: str,
        labels: np.ndarray,
        view: PilSimCLRView,
        probe_view: PilProbeView | None,
        seed: int,
        options: dict[str, Any],
        small_views: tuple[PilSimCLRView, int] | None = None,
    ) -> None:
        super().__init__(location, labels, seed, options)
        self.view = view
        self.probe_view = probe_view
        self.small_views = small_views  # multi-crop: (the small view, how many per image)
        self.collate = NormaliseViews(view.config.mean, view.config.std)

    def __getitem__(self, index: ChunkedIndex | int) -> dict[str, Any]:  # type: ignore[override]
        data, where, position = self.read(index)
        # current_epoch counts from 1 (LitData's), as the views of epoch e draw from it.
        rng = np.random.default_rng([self.seed % 2**32, self.current_epoch, position])
        # As an image folder's files are read (views/crop_decode.py): decoded once, for both crops.
        source = ImageFile.of_bytes(data, where)
        views = views_of_file(source, self.view, self.probe_view, rng, self.small_views)
        views["label"] = int(self.labels[position])
        return views


class ShardEncodedImages(StreamedShards):
    """The training shards for the batched views of images of any size: each item read as a worker
    reads an image folder's file (views/jpeg.py: JPEG bytes, or pixels when a side is over
    `max_decoded_side`), batched by `collate` into what EncodedImages serves for files
    (datamodules/encoded.py), or into their views when the augmenter makes them in the worker (CPU)."""

    def __init__(
        self,
        location: str,
        labels: np.ndarray,
        max_decoded_side: int,
        augmenter: AnySizeViewAugmenter | None,
        seed: int,
        options: dict[str, Any],
    ) -> None:
        super().__init__(location, labels, seed, options)
        self.max_decoded_side = max_decoded_side
        self.collate = EncodedShardBatch(seed, augmenter)

    def __getitem__(self, index: ChunkedIndex | int) -> dict[str, Any]:  # type: ignore[override]
        data, where, position = self.read(index)
        read = read_encoded(bytes(data), where, self.max_decoded_side)  # LitData's is a memoryview
        label = int(self.labels[position])
        return {"read": read, "name": where, "label": label, "index": position, "epoch": self.current_epoch}


class EncodedShardBatch:
    """collate_fn of ShardEncodedImages, run in the worker: one batch as `encoded_batch` makes it.

    A streamed batch has no (rank, batch) place the way a sampled one has, but its first image names
    it: every image is in one batch per epoch over all ranks and workers. So its views are seeded by
    (run seed, epoch, first image): independent across ranks, batches and epochs, and the same after
    a resume, with any number of workers.
    """

    def __init__(self, run_seed: int, augmenter: AnySizeViewAugmenter | None) -> None:
        self.run_seed = run_seed
        self.augmenter = augmenter

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, object]:
        indices = [item["index"] for item in items]
        seed = view_seed(self.run_seed, 0, items[0]["epoch"], indices[0])
        labels = torch.tensor([item["label"] for item in items], dtype=torch.long)
        return encoded_batch(
            [item["read"] for item in items], [item["name"] for item in items], labels, seed, self.augmenter
        )


def set_distributed_env(dataset: StreamingDataset, world_size: int, rank: int, num_nodes: int) -> None:
    """The ranks as the Trainer knows them: LitData's own guess counts nodes from the visible GPUs."""
    dataset.distributed_env = _DistributedEnv(world_size, rank, num_nodes)


class ShardLoader(StreamingDataLoader):
    """LitData's loader, positioned by the datamodule (see the module docstring); drop-last batches.

    `epoch()` is the 0-based epoch Lightning is about to train; each iteration starts there unless
    `resume_at` positioned it inside an epoch.
    """

    def __init__(self, dataset: StreamedShards, epoch: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, drop_last=True, **{"collate_fn": dataset.collate, **kwargs})
        self._epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        if not self.restore:
            self.current_epoch = self._epoch()  # LitData adds 1: its epochs count from 1
        yield from super().__iter__()

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Continue epoch `epoch` (0-based) after its first `batches_done` batches, as LitData replays
        a checkpoint of its own loader: each worker skips what it served, and the worker whose turn
        was next serves first."""
        if batches_done == 0:
            return
        dataset: StreamedShards = self.dataset  # type: ignore[assignment]
        samples = batches_done * self.batch_size  # type: ignore[operator]
        state = dataset.state_dict(samples, self.num_workers, self.batch_size)  # type: ignore[arg-type]
        state["current_epoch"] = epoch + 1
        super().load_state_dict(
            {
                "dataset": state,
                "current_epoch": epoch + 1,
                "num_samples_yielded": samples,
                "latest_worker_idx": (batches_done - 1) % max(self.num_workers, 1),
            }
        )

    def state_dict(self) -> dict[str, Any]:
        """Nothing for Lightning to save: the datamodule's state_dict holds the position."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Ignored: Lightning would hand it over after the loader was built (pytorch-lightning #20550)."""
