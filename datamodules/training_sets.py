"""The training set of each view path, and what is left of the views for the accelerator to make.

`views.path` chooses the path; here it is built: the per-image dataset, the decoded images cached on
the device (or in host memory on a CPU-only run), or the files read per batch. On a CPU-only run every
view is made in the DataLoader workers; on an accelerator the batched paths hand the datamodule a
`DeviceViews`, which finishes each training batch after its transfer (the datamodule's
`transfer_batch_to_device` and `on_after_batch_transfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import move_data_to_device
from torch.utils.data import Dataset

from datamodules.encoded import EncodedImages, full_sizes
from datamodules.loaders import run_seed
from datamodules.sampling import listed_files, listed_labels
from datamodules.uint8_cache import CachedImages, decode_to_uint8, place_images
from views.any_size import AnySizeViewAugmenter
from views.batched import BatchViewAugmenter
from views.config import AugmentConfig
from views.jpeg import decode_images
from views.multicrop import MultiCrop
from views.per_image import PilProbeView, PilSimCLRView
from views.per_image_dataset import SimCLRTrainingDataset


@dataclass(frozen=True)
class Place:
    """Where this process trains: its device, its global rank and the run's seed."""

    device: torch.device
    rank: int
    seed: int

    @classmethod
    def of(cls, trainer: pl.Trainer | None) -> Place:
        """The trainer's root device and global rank (the CPU and rank 0 without one), the run's seed."""
        if trainer is None:
            return cls(torch.device("cpu"), 0, run_seed())
        return cls(trainer.strategy.root_device, trainer.global_rank, run_seed())


def per_image_training_set(
    images: Dataset,
    config: AugmentConfig,
    probe_view: bool,
    place: Place,
    multi_crop: MultiCrop | None = None,
) -> SimCLRTrainingDataset:
    """Views made one image at a time in the workers, from the files themselves where the project's
    loader reads them (views/crop_decode.py); `multi_crop`'s small views after the two large ones."""
    # The rank seeds the views: every rank starts from the same seed (see ProcessGenerator).
    probe = PilProbeView(config.image_size) if probe_view else None
    small_views = None
    if multi_crop is not None:
        small_views = (PilSimCLRView(multi_crop.small_view_config(config)), multi_crop.count)
    files = listed_files(images)
    labels = listed_labels(images) if files is not None else None
    listed = None if labels is None else labels.tolist()
    return SimCLRTrainingDataset(images, PilSimCLRView(config), probe, place.rank, files, listed, small_views)


def cached_training_set(
    images: Dataset, augmenter: BatchViewAugmenter, num_workers: int, root: str, place: Place
) -> tuple[CachedImages, DeviceViews | None]:
    """Pixels decoded once, kept on the device (or pinned), or in host memory on a CPU-only run."""
    pixels, labels = decode_to_uint8(images, num_workers, root)
    pixels, labels = place_images(pixels, labels, place.device)
    if pixels.device.type == "cpu" and place.device.type == "cpu":
        # The workers make the views; forked, they read the parent's pixels without copying them.
        return CachedImages(pixels, labels, place.seed, place.rank, augmenter), None
    return CachedImages(pixels, labels, place.seed, place.rank), DeviceViews(augmenter)


def file_training_set(
    files: Sequence[str],
    labels: np.ndarray,
    augmenter: AnySizeViewAugmenter,
    max_decoded_side: int,
    place: Place,
) -> tuple[EncodedImages, DeviceViews | None]:
    """Files read per batch in the workers; decoded and made into views there on a CPU-only run."""
    if place.device.type == "cpu":
        return EncodedImages(files, labels, place.seed, place.rank, max_decoded_side, augmenter), None
    return EncodedImages(files, labels, place.seed, place.rank, max_decoded_side), DeviceViews(augmenter)


class DeviceViews:
    """Finishes training batches on the accelerator: cached uint8 images, or files decoded there."""

    def __init__(self, augmenter: BatchViewAugmenter | AnySizeViewAugmenter) -> None:
        self.augmenter = augmenter

    def transfer(self, batch: Any, device: torch.device) -> Any:
        """A batch of files arrives as JPEG bytes (which nvJPEG reads from host memory) and leaves
        decoded on `device`; every other batch is moved as Lightning moves it."""
        if not (isinstance(batch, dict) and "encoded" in batch):
            return move_data_to_device(batch, device)
        decoded = decode_images(batch["encoded"], batch["orientation"], batch["name"], device)
        return {
            "decoded": decoded,
            "full_size": full_sizes(batch),  # stays on the host: the image sizes, read without a sync
            "label": batch["label"].to(device, non_blocking=True),
            "view_seed": batch["view_seed"],
        }

    def finish(self, batch: Any) -> Any:
        """Training batches leave as the view contract; evaluation batches pass through."""
        if not isinstance(batch, dict):
            return batch
        augmenter = self.augmenter
        if "decoded" in batch and isinstance(augmenter, AnySizeViewAugmenter):
            images = batch["decoded"]
            generator = augmenter.generator(images[0].device, batch["view_seed"])
            return augmenter.training_batch(images, batch["full_size"], batch["label"], generator)
        if "images" in batch and isinstance(augmenter, BatchViewAugmenter):
            images = batch["images"]
            generator = augmenter.generator(images.device, batch["view_seed"])
            return augmenter.training_batch(images, batch["label"], generator)
        return batch
