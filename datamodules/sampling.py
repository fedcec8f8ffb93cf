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

import torch
from torch.utils.data import Dataset, DistributedSampler, Subset


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


def dataset_labels(dataset: Dataset) -> list[int] | None:
    """The class of every sample without loading any image; None when the dataset does not list them.

    torchvision's ImageFolder and CIFAR keep `targets`, STL10 keeps `labels`; a Subset maps its indices.
    """
    if isinstance(dataset, Subset):
        parent = dataset_labels(dataset.dataset)
        return None if parent is None else [parent[index] for index in dataset.indices]
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    return None if labels is None else [int(label) for label in labels]


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
        labels = dataset_labels(dataset)
        count = len(dataset)  # type: ignore[arg-type]
        self._order = class_interleaved_order(labels, seed) if labels is not None else list(range(count))

    def __iter__(self) -> Iterator[int]:
        repeats = math.ceil(self.total_size / len(self._order)) if self._order else 0
        padded = (self._order * repeats)[: self.total_size]
        return iter(padded[self.rank :: self.num_replicas])
