"""Data orders: training that a resumed run replays exactly; evaluation in class-balanced order.

Training: DistributedSampler already makes each epoch's order a function of (seed, epoch). Two things
are missing for resuming: Lightning creates the first iterator of a resumed run before it calls
``set_epoch``, so that epoch would be shuffled as epoch 0; and the batches the run had already
trained on would be served again. ResumableSampler starts at the epoch and position it is given.

Evaluation: image folders list a class at a time, so `--trainer.limit_val_batches 4` (the cpu-smoke
overlay) would validate on airplanes only and report accuracy 0. ClassInterleavedSampler serves the
whole split in an order whose every prefix holds the classes in their proportions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler, Subset
from torchvision.datasets import DatasetFolder

from views.decode import load_rgb


class ResumableSampler(DistributedSampler):
    """Shuffles every epoch with seed + epoch; the first epoch it serves may skip a number of samples.

    Also used with one device (num_replicas=1), so the order is the same code path everywhere, and
    Lightning leaves a DistributedSampler in place under DDP instead of wrapping it.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        seed: int,
        start_epoch: int = 0,
        skip_samples: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.set_epoch(start_epoch)
        self._skip_samples = skip_samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        # Only the epoch the run resumes in is shortened; later epochs are whole.
        skip, self._skip_samples = self._skip_samples, 0
        return iter(indices[skip:])


@dataclass(frozen=True)
class BatchKey:
    """One training batch of the batched view path: which images, and where it sits in the run.

    `indices` are on the device of the cached images; (epoch, batch) seed the batch's views.
    """

    epoch: int
    batch: int
    indices: Tensor  # [B] long


class ResumableBatchSampler(ResumableSampler):
    """The same order as ResumableSampler, served as one BatchKey per whole batch (partial ones dropped).

    A DistributedSampler, so Lightning keeps it under DDP and sets its epoch. The epoch's indices go to
    `device` once per epoch; a copy per batch would be a blocking host-to-device transfer per step.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        seed: int,
        batch_size: int,
        device: torch.device,
        start_epoch: int = 0,
        skip_batches: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, seed, start_epoch)
        self.batch_size = batch_size
        self.device = device
        self._skip_batches = skip_batches

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[BatchKey]:  # type: ignore[override]
        indices = torch.tensor(list(super().__iter__()), dtype=torch.long).to(self.device)
        # Only the epoch the run resumes in is shortened; later epochs are whole.
        skip, self._skip_batches = self._skip_batches, 0
        for batch in range(skip, len(self)):
            start = batch * self.batch_size
            yield BatchKey(self.epoch, batch, indices[start : start + self.batch_size])


def resume_position(epochs_started: int, batches_done: int, batches_per_epoch: float) -> tuple[int, int]:
    """Where a run continues in the data order from a checkpoint: (epoch, batches of it already trained).

    `epochs_started` counts the epoch in progress and `batches_done` its trained batches, as Lightning's
    loop progress does. Before the first epoch starts (SIGTERM during the start-up sanity check saves a
    step-0 checkpoint) no epoch has started: that is epoch 0 with nothing done, not epoch -1, whose
    negative seed no sampler or view seed takes.
    """
    if epochs_started == 0:
        return 0, 0
    if batches_done >= batches_per_epoch:
        return epochs_started, 0
    return epochs_started - 1, batches_done


def view_seed(run_seed: int, rank: int, epoch: int, batch: int) -> int:
    """The seed of one batch's view parameters: independent across ranks, epochs and batches.

    A function of the batch's place in the run only, so views do not depend on the number of
    DataLoader workers and a resumed run draws the ones the uninterrupted run drew.
    """
    state = np.random.SeedSequence([run_seed % 2**32, rank, epoch, batch]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: a valid manual_seed on every device


def listed_labels(dataset: Dataset) -> np.ndarray | None:
    """The class of every sample without loading any image; None when the dataset does not list them.

    torchvision's ImageFolder and CIFAR keep `targets`, STL10 keeps `labels`; a Subset maps its indices
    and a ConcatDataset chains its parts.
    """
    if isinstance(dataset, Subset):
        parent = listed_labels(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices, dtype=np.int64)]
    for attribute in ("targets", "labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return np.asarray(labels, dtype=np.int64)
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        listed = [listed_labels(part) for part in parts]
        return None if any(labels is None for labels in listed) else np.concatenate(listed)  # type: ignore[arg-type]
    return None


def listed_files(dataset: Dataset) -> list[str] | None:
    """The file of every sample, when the dataset loads files with the project's loader; else None.

    The per-image views then read those files themselves (views/crop_decode.py), decoding JPEGs
    faster and at a reduced scale where the crops allow it; the pixels they start from are the loader's.
    Datasets of decoded pixels (CIFAR, STL-10) and folders read by any other loader are left to load.
    """
    if isinstance(dataset, Subset):
        parent = listed_files(dataset.dataset)
        return None if parent is None else [parent[index] for index in dataset.indices]
    wrapped = getattr(dataset, "images", None)  # HeldOutLabelsHidden: same images, some labels hidden
    if isinstance(wrapped, Dataset):
        return listed_files(wrapped)
    if isinstance(dataset, DatasetFolder) and dataset.loader is load_rgb:
        return [path for path, _ in dataset.samples]
    return None


def class_interleaved_order(labels: Sequence[int], seed: int) -> list[int]:
    """A seeded permutation of range(len(labels)) whose every prefix is class-balanced.

    Each class is shuffled, and its k-th of n images gets the key (k + 0.5) / n: sorting by key spreads
    every class evenly over the order, so a prefix of any length holds each class in its proportion to
    within one image. Ties (classes of equal size) go by a seeded order of the classes.
    """
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    classes = sorted(by_class)
    class_order = torch.randperm(len(classes), generator=generator).tolist()
    class_rank = {classes[i]: rank for rank, i in enumerate(class_order)}
    keyed = []
    for label, indices in by_class.items():
        shuffled = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
        keyed += [((k + 0.5) / len(shuffled), class_rank[label], index) for k, index in enumerate(shuffled)]
    return [index for _, _, index in sorted(keyed)]


class ClassInterleavedSampler(DistributedSampler):
    """The whole evaluation split in class-interleaved order; with several devices, rank r takes every r-th.

    A DistributedSampler so that Lightning keeps it under DDP rather than replacing it with its own
    (which would serve each rank a contiguous, class-sorted share). Like DistributedSampler it repeats
    the first few indices so that every rank gets as many (at most num_replicas - 1 repeats), so the
    metrics still cover the whole split. Without labels the order is the dataset's own.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        labels = listed_labels(dataset)
        count = len(dataset)  # type: ignore[arg-type]
        self._order = list(range(count)) if labels is None else class_interleaved_order(labels.tolist(), seed)

    def __iter__(self) -> Iterator[int]:
        repeats = math.ceil(self.total_size / len(self._order)) if self._order else 0
        padded = (self._order * repeats)[: self.total_size]
        return iter(padded[self.rank :: self.num_replicas])
