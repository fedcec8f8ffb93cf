"""A seeded, stratified validation slice of the labelled training split, for datasets that ship without one.

CIFAR-10/100 and STL-10 have only train and test: validating (and picking checkpoints) on test is
test-set model selection. The slice held out here takes the validation role instead. Its images keep
serving pretraining, where no label is read, but their labels are hidden (UNLABELED) from everything
that trains on labels while pretraining runs: the online probe and the kNN monitor's bank.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset

UNLABELED = -1


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Every label of a dataset without decoding its images, when the dataset keeps them in a list.

    torchvision's ImageFolder and CIFAR keep `targets`, STL-10 keeps `labels`, ConcatDataset chains
    its parts; anything else is read sample by sample (slow, but correct).
    """
    for attribute in ("targets", "labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return np.asarray(labels, dtype=np.int64)
    parts = getattr(dataset, "datasets", None)
    if parts is not None:
        return np.concatenate([dataset_labels(part) for part in parts])
    return np.asarray([int(dataset[index][1]) for index in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def holdout_count(requested: float, num_labelled: int, argument: str = "--data.val_holdout") -> int:
    """`requested` >= 1 is a number of images, a value in (0, 1) a fraction of the labelled images."""
    if requested < 0 or (requested >= 1 and requested != int(requested)):
        raise ValueError(
            f"{argument}={requested} must be 0 (off), a fraction in (0, 1) or a whole number of images."
        )
    count = int(requested) if requested >= 1 else round(requested * num_labelled)
    if count >= num_labelled:
        raise ValueError(
            f"{argument}={requested} would hold out {count} of the {num_labelled} labelled training images, "
            "leaving none to train on; use a smaller number or fraction."
        )
    return count


def stratified_holdout(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices [count] of labelled samples, each class in proportion to its share of them.

    labels: [N] int, UNLABELED (-1) for samples without a label, which are never chosen. A balanced
    split (CIFAR) gives every class the same number; the remainder after the proportional shares goes
    to the classes with the largest fractional parts, ties broken by class index. The choice within a
    class depends only on `seed` and the labels, so every run, rank and resume holds out the same images.
    """
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels[labels != UNLABELED], return_counts=True)
    exact = count * sizes / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = count - int(quotas.sum())
    quotas[np.argsort(-(exact - quotas), kind="stable")[:remainder]] += 1
    chosen = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


class HeldOutLabelsHidden(Dataset):
    """(image, label) of the training split, with UNLABELED in place of the held-out samples' labels."""

    def __init__(self, images: Dataset, held_out: np.ndarray) -> None:
        self.images = images
        targets = dataset_labels(images).copy()
        targets[held_out] = UNLABELED
        # Read by dataset_labels, so label-only consumers (the kNN bank) never decode an image.
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[object, int]:
        image, _ = self.images[index]
        return image, int(self.targets[index])


class HeldOutSplit(Dataset):
    """(transform(image), label) of the held-out samples: the validation split."""

    def __init__(self, images: Dataset, held_out: np.ndarray, transform: Callable) -> None:
        self.images = images
        self.indices = held_out
        self.targets = dataset_labels(images)[held_out]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[object, int]:
        image, _ = self.images[int(self.indices[position])]
        return self.transform(image), int(self.targets[position])


def warn_validating_on_test(dataset_name: str) -> None:
    warnings.warn(
        f"--data.val_holdout 0: {dataset_name} has no validation split, so val/* metrics and the best "
        "checkpoint are computed on the TEST split (test-set model selection); report test numbers "
        "only from runs with a held-out slice.",
        stacklevel=3,
    )
