"""The shared SimCLR datamodule: argument checks, transforms, per-device batching and the dataloaders.

Subclasses only say which images to load; everything that must behave the same across datasets
(the batch contract, drop_last, distributed batch splitting, missing-data errors) lives here.

Two ways to make the views, chosen by `view_path` ("auto" by default):
- batched: the training images are decoded once into one uint8 tensor and each batch's views are made
  for the whole batch at once (datamodules/gpu_augment.py). On an accelerator the tensor sits on the
  device and the views are made there after the transfer (`on_after_batch_transfer`), so the CPU does
  nothing per step but gather indices. On a CPU-only run the views are made inside the DataLoader
  workers instead, a whole batch per worker task: the main process, which trains the model, then
  never waits for augmentation as long as the workers keep up, exactly as on the per-image path.
- per_image: PIL views one image at a time in the workers (datamodules/pil_views.py); the only
  choice for images of different sizes, which cannot share one tensor.
"auto" takes the batched path whenever every training image has one size (CIFAR, STL-10, an image
folder whose files all have one size), at most twice the view size, and the decoded images fit in half
the available memory, and, on a CPU-only run, the views are at most CPU_BATCHED_MAX_VIEW_SIZE px: made
on CPU cores, batched views were faster per core than per-image PIL views at 32 px, slower at 96 px.
The probe view (a weak third view per image) is made only with `probe_view=True`, which
`--probe.features probe_view` sets (cli.py); the default probe trains on the training views instead.
Either way each batch's views are drawn from a seed of (run seed, rank, epoch, batch), so ranks and
workers draw independent parameters and a resumed run draws what the uninterrupted run drew.
"""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.gpu_augment import AugmentConfig, BatchViewAugmenter
from datamodules.holdout import (
    HeldOutLabelsHidden,
    HeldOutSplit,
    check_val_holdout,
    dataset_labels,
    holdout_count,
    stratified_holdout,
    warn_validating_on_test,
)
from datamodules.pil_views import PilProbeView, PilSimCLRView, SimCLRTrainingDataset
from datamodules.sampling import ClassInterleavedSampler, ResumableBatchSampler, ResumableSampler
from datamodules.transforms import ImageTransform, Triple, eval_transform
from datamodules.uint8_cache import CachedImages, decode_to_uint8, place_images
from reliability.worker_signals import ignore_sigterm

EvalSplit = Literal["val", "test"]
ViewPath = Literal["auto", "batched", "per_image"]
# "auto" caches the decoded training images only when they take at most this share of available memory.
CACHE_MEMORY_SHARE = 0.5
# ... and only when images are at most this many times the view size: batched crops are resized without
# antialiasing, invisible for crops up to twice the output but aliasing for larger ones.
MAX_DOWNSCALE = 2
# On a CPU-only run "auto" makes batched views only up to this view size: per core (bench/views.py, one
# thread, 9 interleaved rounds, 2-core machine at load 4.3) batched views made 4.7x the peers' PIL
# pipeline at 32 px but 0.51x at 96 px, where the per-image PIL path made 1.8x.
CPU_BATCHED_MAX_VIEW_SIZE = 64


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
            view_path: where views are made: auto (the faster path for this run, see
                datamodules/base.py), batched (whole batches from decoded uint8 images) or per_image (PIL).
            probe_view: also make each image's weak probe view (batch key "probe_view"), read only by
                `--probe.features probe_view`, which sets it; off, each step makes 2 views per image, not 3.
            val_holdout: held-out validation slice of the labelled training images where the dataset has
                no validation split: a whole number of images (5000) or a fraction below 1 (0.1); 0 turns
                it off; 1.0 is refused as ambiguous. null: 5,000 for CIFAR, 10% otherwise. (Typed int
                before float, so that the command line keeps `1` apart from `1.0`.)
            val_holdout_seed: seed of the choice of held-out images.
        """
        super().__init__()
        self.save_hyperparameters()
        if view_path not in ("auto", "batched", "per_image"):
            raise ValueError(f"view_path={view_path!r} must be one of 'auto', 'batched', 'per_image'.")
        if gpu_augment is not None:
            aliased: ViewPath = "batched" if gpu_augment else "per_image"
            if view_path not in ("auto", aliased):
                raise ValueError(
                    f"gpu_augment={gpu_augment} contradicts view_path={view_path!r}; drop gpu_augment."
                )
            warnings.warn(
                f"--data.gpu_augment is deprecated; use --data.view_path {aliased} (default: auto).",
                FutureWarning,
                stacklevel=2,
            )
            view_path = aliased
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
        images, reason = None, "--data.view_path per_image"
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        # The views are made where the images are trained on: on the device, else in CPU workers.
        slower_on_cpu = device.type == "cpu" and self.image_size > CPU_BATCHED_MAX_VIEW_SIZE
        if self.view_path != "per_image":
            sizes = self._training_image_sizes()
            (width, height) = sizes[0]
            if len(sizes) > 1:
                (w2, h2) = sizes[1]
                if self.view_path == "batched":
                    raise ValueError(
                        f"--data.view_path batched needs training images of one size, but '{self.root}' "
                        f"has {width}x{height} and {w2}x{h2} images (width x height); resize them offline "
                        "to one size or use --data.view_path auto (per-image views)."
                    )
                reason = f"training images differ in size, e.g. {width}x{height} and {w2}x{h2}"
            elif self.view_path == "auto" and slower_on_cpu:
                reason = (
                    f"{self.image_size} px views on CPU: above {CPU_BATCHED_MAX_VIEW_SIZE} px per-image PIL "
                    "views are faster per core than batched ones"
                )
            elif self.view_path == "auto" and max(width, height) > MAX_DOWNSCALE * self.image_size:
                reason = (
                    f"{width}x{height} training images for {self.image_size} px views: batched crops "
                    "are not antialiased, so auto keeps the per-image path for large downscaling"
                )
            else:
                images = self.train_images()
                count = len(images)  # type: ignore[arg-type]
                needed, available = 3 * width * height * count, _available_memory()
                where = "on the CPU" if device.type == "cpu" else f"on {device}"
                reason = f"all {count} training images are {width}x{height}; views made {where}"
                if self.view_path == "auto" and available and needed > CACHE_MEMORY_SHARE * available:
                    images = None
                    reason = (
                        f"{count} images of {width}x{height} take {needed / 2**30:.1f} GiB decoded, over "
                        f"{CACHE_MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB of memory available"
                    )
        self.view_path_used = f"{'batched' if images is not None else 'per_image'} ({reason})"
        rank_zero_info(f"Training views: {self.view_path_used}")
        return images

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
        return SimCLRTrainingDataset(images, view, probe, rank)

    def _build_cached_images(self, training_images: Dataset) -> CachedImages:
        """The batched path: pixels decoded once, kept on the device (or pinned), or in host memory on CPU."""
        images, labels = decode_to_uint8(training_images, self.hparams.num_workers, self.root)
        self._check_enough_images(len(images))
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images, labels = place_images(images, labels, device)
        augmenter = BatchViewAugmenter(
            AugmentConfig.simclr(**self._view_settings()), self.compile_augment, self.probe_view
        )
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if images.device.type == "cpu" and device.type == "cpu":
            # The workers make the views; forked, they read the parent's pixels without copying them.
            return CachedImages(images, labels, _run_seed(), rank, augmenter)
        self._augmenter = augmenter
        return CachedImages(images, labels, _run_seed(), rank)

    def train_dataloader(self) -> DataLoader:
        dataset = self._require(self.train_dataset, "fit")
        if isinstance(dataset, CachedImages):
            return self._cached_loader(dataset)
        # drop_last: a short last batch would have fewer negatives and a differently scaled loss.
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
            seed=_run_seed(),
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
        return ClassInterleavedSampler(dataset, world_size, rank, _run_seed())

    def _cached_loader(self, cached: CachedImages) -> DataLoader:
        """One whole batch per sampler item, in the same resumable order as the per-image path.

        On an accelerator the gather runs in the main process (the images are on the device, nothing
        to collate); on CPU the workers gather and make the views.
        """
        epoch, batches_done = self._resume_position or (0, 0)
        self._resume_position = None
        trainer = self.trainer
        sampler = ResumableBatchSampler(
            cached,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
            seed=_run_seed(),
            batch_size=self.per_device_batch_size,
            device=cached.images.device,
            start_epoch=epoch,
            skip_batches=batches_done,
        )
        workers = self.hparams.num_workers if cached.augmenter is not None else 0
        pinned = (
            torch.cuda.is_available() and cached.images.device.type == "cpu" and cached.images.is_pinned()
        )
        return DataLoader(
            cached, batch_size=None, sampler=sampler, num_workers=workers, pin_memory=pinned,
            persistent_workers=workers > 0, worker_init_fn=ignore_sigterm,
        )  # fmt: skip

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
            worker_init_fn=ignore_sigterm,  # the main process saves on SIGTERM to the group
            # The training views arrive as uint8 and are normalised a batch at a time.
            collate_fn=dataset.collate if isinstance(dataset, SimCLRTrainingDataset) else None,
        )


def _run_seed() -> int:
    """The seed Lightning's seed_everything chose (saved in the run's config.yaml); 0 without one."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
