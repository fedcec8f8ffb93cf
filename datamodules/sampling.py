"""The training sampler: a data order that a run resumed mid-epoch can replay exactly.

DistributedSampler already makes each epoch's order a function of (seed, epoch). Two things are
missing for resuming: Lightning creates the first iterator of a resumed run before it calls
``set_epoch``, so that epoch would be shuffled as epoch 0; and the batches the run had already
trained on would be served again. This sampler starts at the epoch and position it is given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

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
