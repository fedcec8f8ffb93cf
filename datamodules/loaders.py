"""The DataLoaders of a SimCLR datamodule: training in a resumable order, evaluation class-interleaved.

Every order is a function of the run's seed, the rank and the epoch, so ranks read disjoint shares, a
resumed run replays the uninterrupted run's order from where it stopped, and any `limit_*_batches`
prefix of an evaluation split is a class-balanced sample (datamodules/sampling.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from datamodules.encoded import EncodedImages
from datamodules.sampling import ClassInterleavedSampler, ResumableBatchSampler, ResumableSampler
from datamodules.uint8_cache import CachedImages
from reliability.worker_signals import leave_stop_signals_to_main
from views.per_image_dataset import SimCLRTrainingDataset


@dataclass(frozen=True)
class LoaderSettings:
    """What every loader of a process shares: its batch, workers, and place in the run."""

    per_device_batch_size: int
    num_workers: int
    pin_memory: bool
    world_size: int = 1
    rank: int = 0


def run_seed() -> int:
    """The seed Lightning's seed_everything chose (saved in the run's config.yaml); 0 without one."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def per_image_training_loader(
    dataset: Dataset, settings: LoaderSettings, start_epoch: int, batches_done: int
) -> DataLoader:
    """The order is a function of the seed and the epoch, so a resumed run replays it exactly."""
    sampler = ResumableSampler(
        dataset,  # type: ignore[arg-type]
        num_replicas=settings.world_size,
        rank=settings.rank,
        seed=run_seed(),
        start_epoch=start_epoch,
        skip_samples=batches_done * settings.per_device_batch_size,
    )
    # drop_last: a short last batch would have fewer negatives and a differently scaled loss.
    return _loader(dataset, settings, drop_last=True, sampler=sampler)


def evaluation_loader(dataset: Dataset, settings: LoaderSettings) -> DataLoader:
    """Seeded class-interleaved order: any `limit_*_batches` prefix is a class-balanced sample."""
    sampler = ClassInterleavedSampler(dataset, settings.world_size, settings.rank, run_seed())
    return _loader(dataset, settings, drop_last=False, sampler=sampler)


def cached_training_loader(
    cached: CachedImages, settings: LoaderSettings, start_epoch: int, batches_done: int
) -> DataLoader:
    """One whole batch per sampler item, in the same resumable order as the per-image path.

    On an accelerator the gather runs in the main process (the images are on the device, nothing
    to collate); on CPU the workers gather and make the views.
    """
    sampler = _batch_sampler(cached, settings, cached.images.device, start_epoch, batches_done)
    workers = settings.num_workers if cached.augmenter is not None else 0
    pinned = torch.cuda.is_available() and cached.images.device.type == "cpu" and cached.images.is_pinned()
    return DataLoader(
        cached, batch_size=None, sampler=sampler, num_workers=workers, pin_memory=pinned,
        persistent_workers=workers > 0, worker_init_fn=leave_stop_signals_to_main,
    )  # fmt: skip


def file_training_loader(
    files: EncodedImages, settings: LoaderSettings, start_epoch: int, batches_done: int
) -> DataLoader:
    """One whole batch of files per sampler item, in the same resumable order as the other paths.

    The workers read the files (and, on a CPU-only run, decode them and make the views); nothing is
    pinned: nvJPEG reads the bytes from host memory, and pixels decoded in a worker are few.
    """
    sampler = _batch_sampler(files, settings, torch.device("cpu"), start_epoch, batches_done)
    workers = settings.num_workers
    return DataLoader(
        files, batch_size=None, sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
        worker_init_fn=leave_stop_signals_to_main,
    )  # fmt: skip


def _batch_sampler(
    dataset: Dataset, settings: LoaderSettings, device: torch.device, start_epoch: int, batches_done: int
) -> ResumableBatchSampler:
    return ResumableBatchSampler(
        dataset,  # type: ignore[arg-type]
        num_replicas=settings.world_size,
        rank=settings.rank,
        seed=run_seed(),
        batch_size=settings.per_device_batch_size,
        device=device,
        start_epoch=start_epoch,
        skip_batches=batches_done,
    )


def _loader(
    dataset: Dataset, settings: LoaderSettings, drop_last: bool, sampler: DistributedSampler
) -> DataLoader:
    workers = settings.num_workers
    return DataLoader(
        dataset,
        batch_size=settings.per_device_batch_size,
        shuffle=False,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        # Pinned memory only speeds up host-to-GPU copies; torch warns when there is no GPU.
        pin_memory=settings.pin_memory and torch.cuda.is_available(),
        persistent_workers=workers > 0,
        worker_init_fn=leave_stop_signals_to_main,  # the main process saves on SIGTERM, Ctrl-C
        # The training views arrive as uint8 and are normalised a batch at a time.
        collate_fn=dataset.collate if isinstance(dataset, SimCLRTrainingDataset) else None,
    )
