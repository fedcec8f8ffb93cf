"""The shared SimCLR datamodule: argument checks, transforms, per-device batching and the dataloaders.

Subclasses only say which images to load; everything that must behave the same across datasets
(the batch contract, drop_last, distributed batch splitting, missing-data errors) lives here.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.gpu_augment import AugmentConfig, BatchViewAugmenter
from datamodules.sampling import ClassInterleavedSampler, ResumableSampler
from datamodules.transforms import (
    ImageTransform,
    SimCLRTrainingDataset,
    Triple,
    eval_transform,
    probe_transform,
    simclr_view_transform,
)
from datamodules.uint8_cache import CachedImageBatches, decode_to_uint8, place_images

EvalSplit = Literal["val", "test"]


class MissingDatasetError(FileNotFoundError):
    """Raised instead of torchvision's generic errors so users learn exactly which files to provide."""


@contextmanager
def explain_missing_files(dataset_name: str, root: str, what_to_provide: str) -> Iterator[None]:
    """Turns torchvision's download/integrity failures into one actionable message.

    URLError is an OSError; torchvision raises RuntimeError for missing or corrupted (md5) files.
    """
    try:
        yield
    except (OSError, RuntimeError) as err:
        raise MissingDatasetError(
            f"{dataset_name} files are missing or corrupted in '{root}' ({type(err).__name__}: {err}). "
            f"Put {what_to_provide} into '{root}', or run once with download=True on a machine with "
            "internet access."
        ) from err


class SimCLRDataModule(pl.LightningDataModule, ABC):
    """Base for every SimCLR dataset.

    `batch_size` is the GLOBAL batch: SimCLR's negatives come from the whole batch, so the number that
    matters for the method must not silently change with the number of devices.
    """

    # Side of every image of a fixed-size dataset; None when the dataset's images vary in size.
    native_image_size: int | None = None

    def __init__(
        self,
        root: str,
        batch_size: int,
        num_workers: int = 8,
        image_size: int | None = None,
        jitter_strength: float = 1.0,
        min_crop_scale: float = 0.08,
        blur: bool | None = None,
        download: bool = True,
        pin_memory: bool = True,
        gpu_augment: bool = False,
        solarize_p: float = 0.0,
        compile_augment: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 2:
            raise ValueError(
                f"batch_size={batch_size} is too small: SimCLR needs at least 2 images per batch so that "
                "every image has negatives. Use batch_size >= 2 (the paper uses 256-4096)."
            )
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers} must be >= 0 (0 loads data in the main process).")
        if image_size is None and self.native_image_size is None:
            raise ValueError(f"{type(self).__name__} needs an explicit image_size (its images vary in size).")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size={image_size} must be a positive number of pixels.")
        if not 0.0 < min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale={min_crop_scale} must be in (0, 1] (a fraction of the area).")
        if jitter_strength < 0.0:
            raise ValueError(f"jitter_strength={jitter_strength} must be >= 0 (0 disables colour jitter).")
        if not 0.0 <= solarize_p <= 1.0:
            raise ValueError(f"solarize_p={solarize_p} must be a probability in [0, 1] (0 turns it off).")
        self.root = root
        # Not read from hparams: save_hyperparameters() records the subclass's arguments, and
        # datasets with nothing to download (ImageFolder) do not take this one.
        self.download = download
        # A plain attribute (not only in hparams) so Lightning's batch-size finder can change it.
        self.batch_size = batch_size
        # Plain attributes, not hparams: subclasses with their own __init__ need not take them.
        self.gpu_augment = gpu_augment
        self.solarize_p = solarize_p
        self.compile_augment = compile_augment
        self._augmenter: BatchViewAugmenter | None = None
        self._shuffle_seed = 0
        self._image_size: int = image_size if image_size is not None else self.native_image_size  # type: ignore[assignment]
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        # (epoch, batches already trained in it) from a checkpoint; the next training loader starts there.
        self._resume_position: tuple[int, int] | None = None

    # ----- what subclasses provide -------------------------------------------------------------------
    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Available right after __init__: LightningCLI links num_classes into the model."""

    @property
    @abstractmethod
    def mean(self) -> Triple: ...

    @property
    @abstractmethod
    def std(self) -> Triple: ...

    @abstractmethod
    def _pretrain_images(self) -> Dataset:
        """(PIL image, label) pairs for pretraining and the online probe; label -1 when unlabeled."""

    @abstractmethod
    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        """(transformed image, label) pairs of the validation or test split."""

    def _download(self) -> None:
        """Fetches the data once on rank 0; datasets that cannot be downloaded keep this no-op."""

    def train_images(self) -> Dataset:
        """(PIL image, label) pairs of the training split, label -1 when unlabeled.

        Public for the evaluation protocols (linear, kNN, fine-tuning, the kNN monitor), which read
        the training images with their own transforms instead of the SimCLR views.
        """
        return self._pretrain_images()

    # ----- derived properties ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def per_device_batch_size(self) -> int:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size != 0:
            smaller = max(world_size, self.batch_size // world_size * world_size)
            raise ValueError(
                f"batch_size={self.batch_size} (the global batch) is not divisible by the world size "
                f"{world_size} (number of devices x nodes). Use a multiple of {world_size}, e.g. "
                f"batch_size={smaller} or {smaller + world_size}."
            )
        return self.batch_size // world_size

    # ----- Lightning hooks ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.download:
            self._download()

    def setup(self, stage: str | None = None) -> None:
        evaluation = eval_transform(self.image_size, self.mean, self.std, self.native_image_size)
        if stage in (None, "fit") and self.train_dataset is None:
            build = self._build_cached_images if self.gpu_augment else self._build_train_dataset
            self.train_dataset = build()
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._eval_images("val", evaluation)
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self._eval_images("test", evaluation)

    def _check_enough_images(self, count: int) -> None:
        if count < self.batch_size:
            raise ValueError(
                f"The training set in '{self.root}' has {count} images, fewer than "
                f"batch_size={self.batch_size}; with drop_last=True no batch would be produced. "
                "Lower batch_size or add images."
            )

    def _view_settings(self) -> dict[str, Any]:
        """One source for both view pipelines (CPU transforms, batched GPU views), so they cannot drift."""
        hp = self.hparams
        return dict(
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            jitter_strength=hp.jitter_strength,
            min_crop_scale=hp.min_crop_scale,
            blur=hp.blur,
            solarize_p=self.solarize_p,
        )

    def _build_train_dataset(self) -> SimCLRTrainingDataset:
        images = self._pretrain_images()
        self._check_enough_images(len(images))  # type: ignore[arg-type]
        views = simclr_view_transform(**self._view_settings())
        probe = probe_transform(self.image_size, self.mean, self.std, self.native_image_size)
        return SimCLRTrainingDataset(images, views, probe)

    def _build_cached_images(self) -> CachedImageBatches:
        """The GPU path: pixels decoded once and placed on the device (or pinned), views made per batch."""
        images, labels = decode_to_uint8(self._pretrain_images(), self.hparams.num_workers, self.root)
        self._check_enough_images(len(images))
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images, labels = place_images(images, labels, device)
        # Every rank must shuffle alike to take disjoint shares; rank 0's draw is the shared seed.
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self._shuffle_seed = self.trainer.strategy.broadcast(seed) if self.trainer is not None else seed
        self._augmenter = BatchViewAugmenter(
            AugmentConfig.simclr(**self._view_settings()), compile=self.compile_augment
        )
        return CachedImageBatches(images, labels, self.batch_size, self._shuffle_seed)

    def train_dataloader(self) -> DataLoader:
        if self.gpu_augment:
            return self._cached_loader(self._require(self.train_dataset, "fit"))  # type: ignore[arg-type]
        # drop_last: a short last batch would have fewer negatives and a differently scaled loss.
        dataset = self._require(self.train_dataset, "fit")
        return self._loader(dataset, shuffle=False, drop_last=True, sampler=self._train_sampler(dataset))

    def _train_sampler(self, dataset: Dataset) -> ResumableSampler:
        """The order is a function of the seed and the epoch, so a resumed run replays it exactly."""
        epoch, batches_done = self._resume_position or (0, 0)
        self._resume_position = None
        trainer = self.trainer
        return ResumableSampler(
            dataset,  # type: ignore[arg-type]
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            # The seed Lightning's seed_everything chose (saved in the run's config.yaml).
            seed=int(os.environ.get("PL_GLOBAL_SEED", 0)),
            start_epoch=epoch,
            skip_samples=batches_done * self.per_device_batch_size,
        )

    def state_dict(self) -> dict[str, Any]:
        """Where in the data order a checkpoint was taken: the epoch and the batches already trained in it."""
        trainer = self.trainer
        # Validation at the end of an epoch also saves checkpoints, hence the test on fit, not training.
        if trainer is None or trainer.state.fn != "fit":
            return {}
        # Not trainer.current_epoch: it already counts an epoch whose end hooks are still saving.
        epochs_started = trainer.fit_loop.epoch_progress.current.started
        batches_done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches_done >= trainer.num_training_batches:
            return {"epoch": epochs_started, "batches_done": 0}
        return {"epoch": epochs_started - 1, "batches_done": batches_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._resume_position = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

    def val_dataloader(self) -> DataLoader:
        dataset = self._require(self.val_dataset, "validate")
        return self._loader(dataset, shuffle=False, drop_last=False, sampler=self._eval_sampler(dataset))

    def test_dataloader(self) -> DataLoader:
        dataset = self._require(self.test_dataset, "test")
        return self._loader(dataset, shuffle=False, drop_last=False, sampler=self._eval_sampler(dataset))

    def _eval_sampler(self, dataset: Dataset) -> ClassInterleavedSampler:
        """Seeded class-interleaved order: any `limit_*_batches` prefix is a class-balanced sample."""
        trainer = self.trainer
        world_size, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return ClassInterleavedSampler(dataset, world_size, rank, seed)

    def _cached_loader(self, cached: CachedImageBatches) -> DataLoader:
        """Batches are gathered from the cached tensor in the main process: no workers, nothing to collate."""
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        batches = CachedImageBatches(
            cached.images, cached.labels, self.per_device_batch_size, self._shuffle_seed, rank, world_size
        )
        # Lightning warns that __len__ of an IterableDataset may be wrong with several workers; there are
        # none here, so it is exact.
        warnings.filterwarnings("ignore", "Your `IterableDataset` has `__len__` defined", UserWarning)
        images = cached.images
        pinned = torch.cuda.is_available() and images.device.type == "cpu" and images.is_pinned()
        return DataLoader(batches, batch_size=None, num_workers=0, pin_memory=pinned)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """On the GPU path, training batches arrive as uint8 images and leave as the view contract."""
        if self._augmenter is not None and isinstance(batch, dict) and "images" in batch:
            return self._augmenter.training_batch(batch["images"], batch["label"])
        return batch

    def _require(self, dataset: Dataset | None, stage: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup('{stage}') must run before its dataloader.")
        return dataset

    def _loader(
        self, dataset: Dataset, shuffle: bool, drop_last: bool, sampler: DistributedSampler | None = None
    ) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            # Pinned memory only speeds up host-to-GPU copies; torch warns when there is no GPU.
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )
