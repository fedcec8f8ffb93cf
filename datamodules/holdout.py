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

from datamodules.sampling import listed_labels

UNLABELED = -1


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Every label of a dataset: listed ones without decoding an image, else read sample by sample (slow)."""
    listed = listed_labels(dataset)
    if listed is not None:
        return listed
    return np.asarray([int(dataset[index][1]) for index in range(len(dataset))], dtype=np.int64)  # type: ignore[arg-type]


def check_val_holdout(requested: float, argument: str = "--data.val_holdout") -> None:
    """One rule with no overlap: below 1 a fraction of the labelled images, from 1 up a whole count.

    `1.0` (or `1e0`) fits both readings, 100% of the images or one image; it used to be read as one image,
    so a run meant to hold out everything validated on a single image. It is refused, as is anything
    neither a fraction nor a whole number. Whole numbers with a decimal point above 1 (`5000.0`, what
    config.yaml files saved by earlier versions hold) can only be counts and are read as counts.
    """
    if isinstance(requested, bool) or not isinstance(requested, int | float):
        raise ValueError(
            f"{argument}={requested!r} must be a number: a count of images or a fraction below 1"
        )
    if isinstance(requested, float) and requested == 1:
        raise ValueError(
            f"{argument}={requested} is ambiguous (100% of the images, or one image?); write a whole "
            "number of images without a decimal point (e.g. 1 or 5000), or a fraction below 1 (e.g. 0.1 "
            "for 10%)."
        )
    if requested < 0 or (requested >= 1 and requested != int(requested)):
        raise ValueError(
            f"{argument}={requested} must be 0 (off), a fraction below 1 (e.g. 0.1 for 10%) or a whole "
            "number of images (e.g. 5000)."
        )


def holdout_count(requested: float, num_labelled: int, argument: str = "--data.val_holdout") -> int:
    """The number of images `requested` (see check_val_holdout) means for `num_labelled` labelled images."""
    check_val_holdout(requested, argument)
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
    to the classes with the largest fractional parts, ties broken in a seeded random order: with fewer
    held-out images than classes (1,000 classes, 200 images) every share is tied, and an order by
    class index would validate on the first 200 classes only. The choice depends only on `seed` and the
    labels, so every run, rank and resume holds out the same images.
    """
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels[labels != UNLABELED], return_counts=True)
    exact = count * sizes / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = count - int(quotas.sum())
    if remainder:
        # Its own generator: the images chosen within each class stay those `rng` alone chooses.
        tie_order = np.random.default_rng([seed, len(classes)]).permutation(len(classes))
        fractions = (exact - quotas)[tie_order]
        quotas[tie_order[np.argsort(-fractions, kind="stable")[:remainder]]] += 1
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
