"""Shards made by `shards.py convert`, read from a local folder or streamed from an object store.

Everything ImageFolderDataModule offers, from shards: the native size and the mean/std come from the
conversion's dataset.json (no image is read to find them), a held-out slice of train validates when
there is no val/, and every view path works, chosen as for an image folder (views/path.py). Two
stream: LitData reads whole chunks in a (seed, epoch) shuffled order and shards them over ranks, nodes
and DataLoader workers (datamodules/shard_reading.py), and the workers make per-image views of each
image's bytes as of a file's (per_image), or hand each batch's JPEG bytes on as an image folder's files
are handed on, to be decoded where its views are made (batched, images of any size: datamodules/
encoded.py, views/jpeg.py); a run stopped mid-epoch resumes on exactly the images and views the
uninterrupted run would have trained. The batched path for images of one size decodes the training
split once, by index, into one uint8 tensor, as for an image folder.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.base import EvalSplit, SimCLRDataModule
from datamodules.folder_stats import given_statistics, native_size
from datamodules.holdout import dataset_labels
from datamodules.loaders import run_seed
from datamodules.shard_info import ShardInfo, read_shard_info, split_location
from datamodules.training_sets import DeviceViews, Place
from reliability.worker_signals import leave_stop_signals_to_main
from views.any_size import AnySizeViewAugmenter
from views.config import AugmentConfig, Triple
from views.multicrop import SWAV_SMALL_CROP_SCALE
from views.path import ViewPath
from views.per_image import PilProbeView, PilSimCLRView
from views.transforms import ImageTransform

if TYPE_CHECKING:  # LitData and its S3 client load only when shards are read
    from datamodules.shard_reading import StreamedShards


class StreamingDataModule(SimCLRDataModule):
    """`root`: the folder `shards.py convert` wrote, or its URL in an object store (s3://bucket/path, gs://,
    ...; credentials as for that store's own tools, e.g. AWS_ACCESS_KEY_ID). `cache_dir`: where chunks
    fetched from an object store are kept (default: LitData's, under ~/.lightning); `storage_options`:
    passed to the store's client, e.g. {endpoint_url: https://HOST:PORT} for S3-compatible servers
    (https: LitData's chunk client refuses plain http, README, Data at scale).
    image_size, mean and std default to what the conversion measured; val_holdout as ImageFolderDataModule.
    """

    def __init__(
        self,
        root: str,
        batch_size: int,
        num_workers: int = 8,
        image_size: int | None = None,
        jitter_strength: float = 1.0,
        min_crop_scale: float = 0.08,
        blur: bool | None = None,
        pin_memory: bool = True,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        solarize_p: float = 0.0,
        compile_augment: bool = False,
        view_path: ViewPath = "auto",
        probe_view: bool = False,
        val_holdout: float | None = None,
        val_holdout_seed: int = 0,
        max_decoded_side: int = 1024,
        num_small_views: int = 0,
        small_view_size: int | None = None,
        small_crop_scale: tuple[float, float] = SWAV_SMALL_CROP_SCALE,
        cache_dir: str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.info: ShardInfo = read_shard_info(root, storage_options)
        self.native_image_size = _native_size(self.info, root, image_size)
        super().__init__(
            root,
            batch_size,
            num_workers,
            image_size,
            jitter_strength,
            min_crop_scale,
            blur,
            download=False,
            pin_memory=pin_memory,
            solarize_p=solarize_p,
            compile_augment=compile_augment,
            view_path=view_path,
            probe_view=probe_view,
            val_holdout=val_holdout,
            val_holdout_seed=val_holdout_seed,
            max_decoded_side=max_decoded_side,
            num_small_views=num_small_views,
            small_view_size=small_view_size,
            small_crop_scale=small_crop_scale,
        )
        self._mean, self._std = given_statistics(mean, std) or (self.info.mean, self.info.std)
        # Where remote chunks are cached and how the store is reached: LitData's own arguments.
        self.options: dict[str, Any] = {"cache_dir": cache_dir, "storage_options": storage_options or {}}

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def mean(self) -> Triple:
        return self._mean

    @property
    def std(self) -> Triple:
        return self._std

    def resolved_arguments(self) -> dict[str, object]:
        """As ImageFolderDataModule: the size and statistics in effect go into config.yaml."""
        measured = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}
        return {**super().resolved_arguments(), **measured}

    def has_validation_split(self) -> bool:
        return "val" in self.info.splits

    def _pretrain_images(self) -> Dataset:
        from datamodules.shard_reading import ShardImages  # LitData and its S3 client load only when used

        return ShardImages(split_location(self.root, "train"), self.info.splits["train"].labels, self.options)

    def _training_image_sizes(self) -> list[tuple[int, int]]:
        return [(size.width, size.height) for size in self.info.splits["train"].sizes]

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        from datamodules.shard_reading import ShardImages

        present = [name for name in (split, "test" if split == "val" else "val") if name in self.info.splits]
        if split == "test" and present[0] == "val":
            warnings.warn(
                f"'{self.root}' has no test split, so test/* reports on val/, the images val/* and the best "
                "checkpoint were selected on. For an unbiased test number convert a folder with a test/ "
                "split too.",
                stacklevel=2,
            )
        name = present[0]
        return ShardImages(
            split_location(self.root, name), self.info.splits[name].labels, self.options, transform
        )

    def _build_train_dataset(self) -> Dataset:
        """The streamed per-image path (the batched path decodes train_images() instead, see base)."""
        from datamodules.shard_reading import ShardTrainingViews

        labels = dataset_labels(self.train_images())  # the held-out slice carries -1
        self._check_enough_images(len(labels))
        config = AugmentConfig.simclr(**self._view_settings())
        probe = PilProbeView(self.image_size) if self.probe_view else None
        small = None
        if self.multi_crop is not None:
            small = (PilSimCLRView(self.multi_crop.small_view_config(config)), self.multi_crop.count)
        location = split_location(self.root, "train")
        view = PilSimCLRView(config)
        views = ShardTrainingViews(location, labels, view, probe, run_seed(), self.options, small)
        return self._distributed(views)

    def _read_per_batch(self) -> str:
        """Shards hold JPEG bytes, which the batched path for images of any size reads as files."""
        return "JPEG bytes streamed from the shards per batch"

    def _per_batch_training_set(
        self, augmenter: AnySizeViewAugmenter, place: Place
    ) -> tuple[Dataset, DeviceViews | None]:
        """The shards streamed, each batch handed on as an image folder's files are (EncodedImages)."""
        from datamodules.shard_reading import ShardEncodedImages

        labels = dataset_labels(self.train_images())  # the held-out slice carries -1
        on_cpu = place.device.type == "cpu"
        dataset = ShardEncodedImages(
            split_location(self.root, "train"),
            labels,
            self.max_decoded_side,
            augmenter if on_cpu else None,  # on an accelerator the views are made after the transfer
            place.seed,
            self.options,
        )
        return self._distributed(dataset), None if on_cpu else DeviceViews(augmenter)

    def _distributed(self, dataset: StreamedShards) -> StreamedShards:
        from datamodules.shard_reading import set_distributed_env

        trainer = self.trainer
        if trainer is not None:
            set_distributed_env(dataset, trainer.world_size, trainer.global_rank, trainer.num_nodes)
        return dataset

    def train_dataloader(self) -> DataLoader:
        from datamodules.shard_reading import EncodedShardBatch, ShardLoader, StreamedShards

        dataset = self._require(self.train_dataset, "fit")
        if not isinstance(dataset, StreamedShards):
            return super().train_dataloader()
        epoch, batches_done = self._resume_position or (0, 0)
        self._resume_position = None
        workers = self.hparams.num_workers
        # Not persistent_workers: a worker keeps its own copy of LitData's epoch, which a partial epoch
        # (--trainer.limit_train_batches) would leave behind; fresh workers take the epoch set here.
        # Batches of JPEG bytes are not pinned, as on the file path: nvJPEG reads them from host memory.
        pinned = not isinstance(dataset.collate, EncodedShardBatch)
        loader = ShardLoader(
            dataset,
            self._epoch_to_train,
            batch_size=self.per_device_batch_size,
            num_workers=workers,
            pin_memory=pinned and self.hparams.pin_memory and torch.cuda.is_available(),
            worker_init_fn=leave_stop_signals_to_main if workers > 0 else None,
        )
        loader.resume_at(epoch, batches_done)
        return loader

    def _epoch_to_train(self) -> int:
        """The epoch Lightning is about to train (0-based), read when the loader starts an epoch."""
        trainer = self.trainer
        return trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0


def _native_size(info: ShardInfo, root: str, image_size: int | None) -> int | None:
    """As an image folder's: the side of every image of every split when they share one square size."""
    examples: dict[tuple[int, int], str] = {}
    for name, split in info.splits.items():
        for size in split.sizes:
            examples.setdefault((size.width, size.height), f"{name}/{size.example}")
    return native_size(list(examples.items()), root, image_size)
