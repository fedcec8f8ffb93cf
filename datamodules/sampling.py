"""The training sampler: a data order that a run resumed mid-epoch can replay exactly.

DistributedSampler already makes each epoch's order a function of (seed, epoch). Two things are
missing for resuming: Lightning creates the first iterator of a resumed run before it calls
``set_epoch``, so that epoch would be shuffled as epoch 0; and the batches the run had already
trained on would be served again. This sampler starts at the epoch and position it is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Shuffles every epoch with seed + epoch; the first epoch it serves may skip a number of samples.

    Also used with one device (num_replicas=1), so the order is the same code path everywhere, and
    Lightning leaves a DistributedSampler in place under DDP instead of wrapping it.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        seed: int,
        start_epoch: int = 0,
        skip_samples: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.set_epoch(start_epoch)
        self._skip_samples = skip_samples

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        # Only the epoch the run resumes in is shortened; later epochs are whole.
        skip, self._skip_samples = self._skip_samples, 0
        return iter(indices[skip:])


@dataclass(frozen=True)
class BatchKey:
    """One training batch of the batched view path: which images, and where it sits in the run.

    `indices` are on the device of the cached images; (epoch, batch) seed the batch's views.
    """

    epoch: int
    batch: int
    indices: Tensor  # [B] long


class ResumableBatchSampler(ResumableSampler):
    """The same order as ResumableSampler, served as one BatchKey per whole batch (partial ones dropped).

    A DistributedSampler, so Lightning keeps it under DDP and sets its epoch. The epoch's indices go to
    `device` once per epoch; a copy per batch would be a blocking host-to-device transfer per step.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        seed: int,
        batch_size: int,
        device: torch.device,
        start_epoch: int = 0,
        skip_batches: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, seed, start_epoch)
        self.batch_size = batch_size
        self.device = device
        self._skip_batches = skip_batches

    def __len__(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self) -> Iterator[BatchKey]:  # type: ignore[override]
        indices = torch.tensor(list(super().__iter__()), dtype=torch.long).to(self.device)
        # Only the epoch the run resumes in is shortened; later epochs are whole.
        skip, self._skip_batches = self._skip_batches, 0
        for batch in range(skip, len(self)):
            start = batch * self.batch_size
            yield BatchKey(self.epoch, batch, indices[start : start + self.batch_size])


def view_seed(run_seed: int, rank: int, epoch: int, batch: int) -> int:
    """The seed of one batch's view parameters: independent across ranks, epochs and batches.

    A function of the batch's place in the run only, so views do not depend on the number of
    DataLoader workers and a resumed run draws the ones the uninterrupted run drew.
    """
    state = np.random.SeedSequence([run_seed % 2**32, rank, epoch, batch]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))  # 63 bits: a valid manual_seed on every device
