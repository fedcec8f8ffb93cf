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

from datamodules.arguments import check_enough_images, check_view_arguments
from datamodules.holdout import (
    HeldOutLabelsHidden,
    HeldOutSplit,
    check_val_holdout,
    dataset_labels,
    holdout_count,
    stratified_holdout,
    warn_validating_on_test,
)
from datamodules.loaders import (
    LoaderSettings,
    evaluation_loader,
    training_loader,
)
from datamodules.sampling import listed_files, resume_position
from datamodules.training_sets import (
    DeviceViews,
    Place,
    cached_training_set,
    file_training_set,
    per_image_training_set,
)
from views.any_size import AnySizeViewAugmenter
from views.config import AugmentConfig, Triple
from views.multicrop import SWAV_SMALL_CROP_SCALE, MultiCrop, any_size_augmenter, batch_augmenter
from views.path import ViewPath, choose_view_path, resolve_view_path
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
    default_val_holdout: int | float = 0.1

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
        val_holdout: int | float | None = None,
        val_holdout_seed: int = 0,
        max_decoded_side: int = 1024,
        num_small_views: int = 0,
        small_view_size: int | None = None,
        small_crop_scale: tuple[float, float] = SWAV_SMALL_CROP_SCALE,
    ) -> None:
        """The help of each argument is what `train.py fit --help` shows for its `--data.` option.

        Args:
            root: the dataset's folder (downloaded into it where the dataset can be downloaded).
            batch_size: the GLOBAL batch over all devices and nodes; each device loads its share.
            num_workers: DataLoader worker processes per device (0 loads in the main process).
            image_size: side of the training views in pixels; null: the dataset's native size.
            jitter_strength: colour-jitter strength s of the paper (1.0; CIFAR recipe 0.5; 0 turns it off).
            min_crop_scale: smallest area fraction of a random resized crop (paper: 0.08).
            blur: Gaussian blur on the views; null blurs from 96 px up, as the paper does.
            download: fetch the dataset into root when its files are missing (CIFAR, STL-10).
            pin_memory: page-locked host batches, for faster copies to a GPU.
            gpu_augment: deprecated alias of view_path (true: batched, false: per_image).
            solarize_p: probability of solarising a view (BYOL's augmentation; 0 turns it off).
            compile_augment: torch.compile the batched view-making.
            view_path: where views are made: auto (the faster path for this run, see views/path.py),
                batched (whole batches on the device: from decoded uint8 images, or from the files for images
                of varied sizes) or per_image (one image at a time in the workers).
            probe_view: also make each image's weak probe view (batch key "probe_view"), read only by
                `--probe.features probe_view`, which sets it; off, each step makes 2 views per image, not 3.
            val_holdout: held-out validation slice of the labelled training images where the dataset has
                no validation split: a whole number of images (5000) or a fraction below 1 (0.1); 0 turns
                it off; 1.0 is refused as ambiguous. null: 5,000 for CIFAR, 10% otherwise. (Typed int
                before float, so that the command line keeps `1` apart from `1.0`.)
            val_holdout_seed: seed of the choice of held-out images.
            max_decoded_side: on the batched path for images of any size, an image whose longer side is
                larger is decoded in the workers at reduced size (views/jpeg.py), bounding a batch's memory.
            num_small_views: multi-crop (SwAV): this many small views per image beside the two large ones
                (views/multicrop.py); 0 keeps SimCLR's two views.
            small_view_size: side of the small views; null: image_size x 96/224 (SwAV), a multiple of 8.
            small_crop_scale: area fractions of the small crops (SwAV: 0.05-0.14).
        """
        super().__init__()
        self.save_hyperparameters()
        view_path = resolve_view_path(view_path, gpu_augment)
        check_view_arguments(
            batch_size, num_workers, image_size, self.native_image_size, min_crop_scale, jitter_strength,
            solarize_p, max_decoded_side, type(self).__name__,
        )  # fmt: skip
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
        self.max_decoded_side = max_decoded_side
        # The path this run takes, and why ("batched: all 50000 training images are 32x32"), after setup.
        self.view_path_used: str | None = None
        # What is left of the training views for the accelerator, after each batch's transfer.
        self._device_views: DeviceViews | None = None
        self._image_size: int = image_size if image_size is not None else self.native_image_size  # type: ignore[assignment]
        self.multi_crop = MultiCrop.of(num_small_views, small_view_size, small_crop_scale, self.image_size)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        # (epoch, batches already trained in it) from a checkpoint; the next training loader starts there.
        self._resume_position: tuple[int, int] | None = None
        # Plain attributes: subclasses with their own __init__ pass them on.
        self.val_holdout = self.default_val_holdout if val_holdout is None else val_holdout
        check_val_holdout(self.val_holdout)
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
            self.train_dataset = self._training_set()
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._validation_images(evaluation)
        if stage in (None, "test") and self.test_dataset is None:
            self.test_dataset = self._eval_images("test", evaluation)

    def _training_set(self) -> Dataset:
        """The training set of the view path this run takes (views/path.py); says which and why."""
        place = Place.of(self.trainer)
        choice = choose_view_path(
            self.view_path,
            self.image_size,
            place.device,
            self._training_image_sizes,
            lambda: len(self.train_images()),  # type: ignore[arg-type]
            self.root,
            self._read_per_batch() if self.view_path != "per_image" else None,
        )
        self.view_path_used = str(choice)
        rank_zero_info(f"Training views: {self.view_path_used}")
        config = AugmentConfig.simclr(**self._view_settings())
        if choice.from_files:
            self._check_enough_images(len(self.train_images()))  # type: ignore[arg-type]
            augmenter = any_size_augmenter(config, self.multi_crop, self.probe_view, self.compile_augment)
            dataset, self._device_views = self._per_batch_training_set(augmenter, place)
            return dataset
        if choice.batched:
            augmenter = batch_augmenter(config, self.multi_crop, self.compile_augment, self.probe_view)
            cached, self._device_views = cached_training_set(
                self.train_images(), augmenter, self.hparams.num_workers, self.root, place
            )
            self._check_enough_images(len(cached))
            return cached
        return self._build_train_dataset()

    def _read_per_batch(self) -> str | None:
        """How the batched path for images of any size reads the training images a batch at a time
        (said in the run summary): their files, when the project's loader reads them (image folders;
        not CIFAR, STL-10); None where it cannot."""
        return "files read per batch" if listed_files(self.train_images()) is not None else None

    def _per_batch_training_set(
        self, augmenter: AnySizeViewAugmenter, place: Place
    ) -> tuple[Dataset, DeviceViews | None]:
        """The training images read a batch at a time in the workers (StreamingDataModule streams)."""
        images = self.train_images()
        files = listed_files(images)
        return file_training_set(files, dataset_labels(images), augmenter, self.max_decoded_side, place)  # type: ignore[arg-type]

    def _build_train_dataset(self) -> Dataset:
        """The per-image path's training set: views made one image at a time in the workers."""
        images = self.train_images()
        self._check_enough_images(len(images))  # type: ignore[arg-type]
        config = AugmentConfig.simclr(**self._view_settings())
        place = Place.of(self.trainer)
        return per_image_training_set(images, config, self.probe_view, place, self.multi_crop)

    def _validation_images(self, transform: ImageTransform) -> Dataset:
        held_out = self.held_out_indices()
        if held_out is not None:
            return HeldOutSplit(self.train_images(include_held_out=True), held_out, transform)
        if not self.has_validation_split():
            warn_validating_on_test(type(self).__name__)
        return self._eval_images("val", transform)

    def _check_enough_images(self, count: int) -> None:
        check_enough_images(count, self.batch_size, self.root)

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

    def train_dataloader(self) -> DataLoader:
        dataset = self._require(self.train_dataset, "fit")
        epoch, batches_done = self._resume_position or (0, 0)
        self._resume_position = None
        return training_loader(dataset, self._loader_settings(), epoch, batches_done)

    def state_dict(self) -> dict[str, Any]:
        """Where in the data order a checkpoint was taken: the epoch and the batches already trained in it."""
        trainer = self.trainer
        # Validation at the end of an epoch also saves checkpoints, hence the test on fit, not training.
        if trainer is None or trainer.state.fn != "fit":
            return {}
        # Not trainer.current_epoch: it already counts an epoch whose end hooks are still saving.
        epoch, batches_done = resume_position(
            trainer.fit_loop.epoch_progress.current.started,
            trainer.fit_loop.epoch_loop.batch_progress.current.processed,
            trainer.num_training_batches,
        )
        return {"epoch": epoch, "batches_done": batches_done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            # Step-0 checkpoints saved before resume_position recorded epoch -1: it means epoch 0.
            epoch = max(0, int(state_dict["epoch"]))
            self._resume_position = (epoch, int(state_dict["batches_done"]))

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

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches of files leave their JPEGs as bytes for the device to decode (views/jpeg.py)."""
        if self._device_views is None:
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        return self._device_views.transfer(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """On an accelerator, training batches arrive as uint8 images and leave as the view contract."""
        return batch if self._device_views is None else self._device_views.finish(batch)

    def _require(self, dataset: Dataset | None, stage: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup('{stage}') must run before its dataloader.")
        return dataset
