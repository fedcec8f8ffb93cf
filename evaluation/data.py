"""Labelled images and encoder features for the evaluation protocols.

Evaluation reads the datamodule's splits with its own transforms (the deterministic evaluation view,
or crop + flip for fine-tuning) instead of the two SimCLR views the training loader produces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from datamodules.base import SimCLRDataModule
from datamodules.holdout import dataset_labels
from evaluation.progress import shown
from views.transforms import ImageTransform, eval_transform, probe_transform

UNLABELED = -1


class TransformedSubset(Dataset):
    """(transform(image), label) for chosen indices of a (PIL image, label) dataset."""

    def __init__(
        self, images: Dataset, indices: Sequence[int], labels: np.ndarray, transform: ImageTransform
    ):
        self.images = images
        self.indices = [int(index) for index in indices]
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Tensor, int]:
        image, _ = self.images[self.indices[position]]
        return self.transform(image), int(self.labels[self.indices[position]])


class LabelledTrainSplit:
    """The labelled part of a datamodule's training split (STL-10's unlabeled images are left out).

    Without `include_held_out` the held-out validation slice is left out too (the kNN monitor's bank).
    """

    def __init__(self, datamodule: SimCLRDataModule, include_held_out: bool = False) -> None:
        self.datamodule = datamodule
        self.images = datamodule.train_images(include_held_out=include_held_out)
        self.all_labels = dataset_labels(self.images)
        self.indices = np.flatnonzero(self.all_labels != UNLABELED)
        if len(self.indices) == 0:
            raise ValueError(
                f"The training split of {type(datamodule).__name__} in '{datamodule.root}' has no labelled "
                "images; evaluation protocols need labels to train a classifier."
            )

    @property
    def labels(self) -> np.ndarray:
        """Labels of the labelled images, in the order of `indices`."""
        return self.all_labels[self.indices]

    def dataset(self, positions: Sequence[int] | None = None, augment: bool = False) -> TransformedSubset:
        """Images at `positions` (into `indices`; all when None), evaluation view or crop + flip."""
        chosen = self.indices if positions is None else self.indices[np.asarray(positions, dtype=np.int64)]
        return TransformedSubset(
            self.images, chosen, self.all_labels, train_transform(self.datamodule, augment)
        )


def train_transform(datamodule: SimCLRDataModule, augment: bool) -> ImageTransform:
    """The evaluation view, or the probe's weak augmentation (random crop + flip) when `augment`."""
    make = probe_transform if augment else eval_transform
    return make(datamodule.image_size, datamodule.mean, datamodule.std, datamodule.native_image_size)


def evaluation_split(datamodule: SimCLRDataModule) -> Dataset:
    """The test split (the validation split where a dataset has no separate test split), evaluation view."""
    datamodule.setup("test")
    return datamodule.test_dataset  # type: ignore[return-value]


def loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool = False) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


@torch.no_grad()
def extract_features(
    encoder: nn.Module, data: DataLoader, device: torch.device, description: str = "features"
) -> tuple[Tensor, Tensor]:
    """float32 features [N, D] and labels [N] on the CPU, with the encoder in eval mode."""
    encoder.eval().to(device)
    features, labels = [], []
    for images, batch_labels in shown(data, description):
        features.append(encoder(images.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(batch_labels))
    return torch.cat(features), torch.cat(labels).long()
