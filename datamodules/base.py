"""The shared SimCLR datamodule: argument checks, splits, the view path, per-device batching.

Subclasses only say which images to load; everything that must behave the same across datasets
(the batch contract, drop_last, distributed batch splitting) lives here, the loaders in
`datamodules.loaders`.

How the training views are made, and which of the two view paths "auto" takes, is `views.path`.
The probe view (a weak third view per image) is made only with `probe_view=True`, which
`--probe.features probe_view` sets (cli.py); the default probe trains on the training views instead.
Either way each batch's views are drawn from a seed of (run seed, rank, epoch, batch), so ranks and
workers draw independent parameters and a resumed run draws what the uninterrupted run drew.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from datamodules.holdout import (
    HeldOutLabelsHidden,
    HeldOutSplit,
    dataset_labels,
    holdout_count,
    stratified_holdout,
    warn_validating_on_test,
)
from datamodules.loaders import (
    LoaderSettings,
    cached_training_loader,
    evaluation_loader,
    per_image_training_loader,
    run_seed,
)
from datamodules.sampling import listed_files, listed_labels
from datamodules.uint8_cache import CachedImages, decode_to_uint8, place_images
from views.batched import BatchViewAugmenter
from views.config import AugmentConfig, Triple
from views.multicrop import SWAV_SMALL_CROP_SCALE, MultiCrop, MultiCropBatchAugmenter
from views.path import ViewPath, choose_view_path, resolve_view_path
from views.per_image import PilProbeView, PilSimCLRView
from views.per_image_dataset import SimCLRTrainingDataset
from views.transforms import ImageTransform, eval_transform

EvalSplit = Literal["val", "test"]


class SimCLRDataModule(pl.LightningDataModule, ABC):
    """Base for every SimCLR dataset.

    `batch_size` is the GLOBAL batch: SimCLR's negatives come from the whole batch, so the number that
    matters for the method must not silently change with the number of devices.
    """

    # Side of every image of a fixed-size dataset; None when the dataset's images vary in size.
    native_image_size: int | None = None
    # Held out of the labelled training split where there is no validation split (datamodules/holdout.py).
    default_val_holdout: float = 0.1

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
        gpu_augment: bool | None = None,
        solarize_p: float = 0.0,
        compile_augment: bool = False,
        view_path: ViewPath = "auto",
        probe_view: bool = False,
        val_holdout: float | None = None,
        val_holdout_seed: int = 0,
        num_small_views: int = 0,
        small_view_size: int | None = None,
        small_crop_scale: tuple[float, float] = SWAV_SMALL_CROP_SCALE,
    ) -> None:
        """`view_path`: "auto" (the faster path where the views are made, see the module docstring),
        "batched" or "per_image". `gpu_augment` is its deprecated alias.
        `probe_view`: also make each image's weak probe view (batch key "probe_view"), read only by
        `OnlineLinearProbe(features="probe_view")`; off, each step makes 2 views per image instead of 3.
        The command line sets it from `--probe.features`.
        `num_small_views`: multi-crop (views.multicrop): this many small views per image beside the two
        large ones, `small_view_size` px (default: image_size x 96 / 224 as in SwAV, to a multiple of 8),
        cropped from `small_crop_scale` of the area (SwAV: 0.05-0.14); 0 keeps SimCLR's two views."""
        super().__init__()
        self.save_hyperparameters()
        view_path = resolve_view_path(view_path, gpu_augment)
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
        self.view_path = view_path
        self.solarize_p = solarize_p
        self.compile_augment = compile_augment
        self.probe_view = probe_view
        # The path this run takes, and why ("batched: all 50000 training images are 32x32"), after setup.
        self.view_path_used: str | None = None
        self._augmenter: BatchViewAugmenter | None = None
        self._image_size: int = image_size if image_size is not None else self.native_image_size  # type: ignore[assignment]
        self.multi_crop = MultiCrop.of(num_small_views, small_view_size, small_crop_scale, self.image_size)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        # (epoch, batches already trained in it) from a checkpoint; the next training loader starts there.
        self._resume_position: tuple[int, int] | None = None
        # Plain attributes: subclasses with their own __init__ pass them on.
        self.val_holdout = self.default_val_holdout if val_holdout is None else val_holdout
        self.val_holdout_seed = val_holdout_seed
        self._training_split: Dataset | None = None
        self._held_out: np.ndarray | None = None

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

    def _training_image_sizes(self) -> list[tuple[int, int]]:
        """Up to two distinct (width, height) of the training images; one entry when all share it.

        Fixed-size datasets know it without reading a file; image folders override this.
        """
        side = self.native_image_size
        if side is None:
            raise NotImplementedError(f"{type(self).__name__} must say whether its images share one size.")
        return [(side, side)]

    def has_validation_split(self) -> bool:
        """False where the dataset ships only train and test; a slice of train then validates."""
        return False

    def resolved_arguments(self) -> dict[str, object]:
        """Defaults in effect that config.yaml should pin (cli.py writes them where the config had None),
        so a rerun of a saved config validates on the same split even if a default changes later."""
        return {} if self.has_validation_split() else {"val_holdout": self.val_holdout}

    def train_images(self, include_held_out: bool = False) -> Dataset:
        """(PIL image, label) pairs of the training split, label -1 when unlabeled.

        The held-out validation images carry -1 too, so neither the online probe nor the kNN bank learns
        from them; `include_held_out` restores their labels for protocols that report on the test split
        and select nothing (evaluate.py's linear, kNN and fine-tuning, as the published protocols do).
        Public for the evaluation protocols, which read the training images with their own transforms.
        """
        held_out = self.held_out_indices()
        if include_held_out or held_out is None:
            return self._loaded_training_split()
        return HeldOutLabelsHidden(self._loaded_training_split(), held_out)

    def held_out_indices(self) -> np.ndarray | None:
        """Sorted indices into the training split of the validation slice; None when there is none."""
        if self.has_validation_split() or self.val_holdout == 0:
            return None
        if self._held_out is None:
            labels = dataset_labels(self._loaded_training_split())
            count = holdout_count(self.val_holdout, int((labels >= 0).sum()))
            self._held_out = stratified_holdout(labels, count, self.val_holdout_seed)
        return self._held_out

    def _loaded_training_split(self) -> Dataset:
        """The subclass's training split, read once for the loaders and the held-out slice."""
        if self._training_split is None:
            self._training_split = self._pretrain_images()
        return self._training_split

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
            cacheable = self._cacheable_training_images()
            self.train_dataset = (
                self._build_train_dataset() if cacheable is None else self._build_cached_images(cacheable)
            )
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._validation_images(evaluation)
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self._eval_images("test", evaluation)

    def _cacheable_training_images(self) -> Dataset | None:
        """The training images when this run takes the batched path, else None; says which and why."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        choice = choose_view_path(
            self.view_path,
            self.image_size,
            device,
            self._training_image_sizes,
            lambda: len(self.train_images()),  # type: ignore[arg-type]
            self.root,
        )
        self.view_path_used = str(choice)
        rank_zero_info(f"Training views: {self.view_path_used}")
        return self.train_images() if choice.batched else None

    def _validation_images(self, transform: ImageTransform) -> Dataset:
        held_out = self.held_out_indices()
        if held_out is not None:
            return HeldOutSplit(self.train_images(include_held_out=True), held_out, transform)
        if not self.has_validation_split():
            warn_validating_on_test(type(self).__name__)
        return self._eval_images("val", transform)

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
        images = self.train_images()
        self._check_enough_images(len(images))  # type: ignore[arg-type]
        view = PilSimCLRView(AugmentConfig.simclr(**self._view_settings()))
        # The rank seeds the views: every rank starts from the same seed (see ProcessGenerator).
        rank = self.trainer.global_rank if self.trainer is not None else 0
        probe = PilProbeView(self.image_size) if self.probe_view else None
        multi_crop, small_views = self.multi_crop, None
        if multi_crop is not None:
            small_views = (PilSimCLRView(multi_crop.small_view_config(view.config)), multi_crop.count)
        files = listed_files(images)
        labels = listed_labels(images) if files is not None else None
        listed = None if labels is None else labels.tolist()
        return SimCLRTrainingDataset(images, view, probe, rank, files, listed, small_views)

    def _build_cached_images(self, training_images: Dataset) -> CachedImages:
        """The batched path: pixels decoded once, kept on the device (or pinned), or in host memory on CPU."""
        images, labels = decode_to_uint8(training_images, self.hparams.num_workers, self.root)
        self._check_enough_images(len(images))
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images, labels = place_images(images, labels, device)
        config = AugmentConfig.simclr(**self._view_settings())
        augmenter = (
            BatchViewAugmenter(config, self.compile_augment, self.probe_view)
            if self.multi_crop is None
            else MultiCropBatchAugmenter(config, self.multi_crop, self.compile_augment, self.probe_view)
        )
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if images.device.type == "cpu" and device.type == "cpu":
            # The workers make the views; forked, they read the parent's pixels without copying them.
            return CachedImages(images, labels, run_seed(), rank, augmenter)
        self._augmenter = augmenter
        return CachedImages(images, labels, run_seed(), rank)

    def train_dataloader(self) -> DataLoader:
        dataset = self._require(self.train_dataset, "fit")
        epoch, batches_done = self._resume_position or (0, 0)
        self._resume_position = None
        if isinstance(dataset, CachedImages):
            return cached_training_loader(dataset, self._loader_settings(), epoch, batches_done)
        return per_image_training_loader(dataset, self._loader_settings(), epoch, batches_done)

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
        return evaluation_loader(self._require(self.val_dataset, "validate"), self._loader_settings())

    def test_dataloader(self) -> DataLoader:
        return evaluation_loader(self._require(self.test_dataset, "test"), self._loader_settings())

    def _loader_settings(self) -> LoaderSettings:
        trainer = self.trainer
        return LoaderSettings(
            self.per_device_batch_size,
            self.hparams.num_workers,
            self.hparams.pin_memory,
            world_size=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """On an accelerator, training batches arrive as uint8 images and leave as the view contract."""
        if self._augmenter is not None and isinstance(batch, dict) and "images" in batch:
            images = batch["images"]
            generator = self._augmenter.generator(images.device, batch["view_seed"])
            return self._augmenter.training_batch(images, batch["label"], generator)
        return batch

    def _require(self, dataset: Dataset | None, stage: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup('{stage}') must run before its dataloader.")
        return dataset
