"""How the ranks of a DDP run agree to stop, at no cost to the device and without waiting for each other.

A signal may reach one rank only (`kill PID`, an out-of-memory killer), yet every rank must stop at the
same step boundary, or the others wait forever in the next gradient all-reduce. A blocking all-reduce
of a device tensor and a host read of the result at every boundary (Lightning's
`reduce_boolean_decision`) would agree, but under NCCL that read waits for the device queue to drain:
a host sync per training step.

Here the flag stays on the host. Each boundary launches an asynchronous all-reduce (MAX) of this rank's
flag over a gloo group of its own, and reads the one launched at the previous boundary. Every rank
launched that one a whole step ago, so the wait ends at once (in validation, where no gradient
all-reduce keeps the ranks in step, it lasts at most another rank's lag behind this one); every rank
reads the same outcome at the same boundary, so all stop together, one batch after the request.
`settle` reads at once instead (blocking, on the host): where a fit ends its epochs or its sanity
check, so that a request made in the last batch is not left unread.

Every rank must vote at the same boundaries in the same order. Under DDP every rank runs the same
number of training batches (the gradient all-reduce needs it) and of validation batches (Lightning's
DistributedSampler, and this project's samplers, pad the last share).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class StopVote:
    """The ranks' agreement on a stop request, one batch boundary behind the request."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self._group = group
        self._pending: tuple[dist.Work, torch.Tensor] | None = None

    @staticmethod
    def can_run() -> bool:
        """Whether the ranks share a torch.distributed group (DDP, FSDP; not XLA) and gloo is built."""
        return dist.is_available() and dist.is_initialized() and dist.is_gloo_available()

    @classmethod
    def on_new_gloo_group(cls) -> StopVote:
        """A collective call: every rank of the default group makes it, in the same order as its other
        `new_group` calls. Gloo runs on the CPU whatever the main group's backend (NCCL on GPUs)."""
        return cls(dist.new_group(backend="gloo"))

    def cast(self, asked: bool) -> bool:
        """Launches this boundary's vote; returns whether any rank had asked at the previous boundary."""
        previous = self._outcome()
        flag = torch.tensor([int(asked)], dtype=torch.int32)
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        self._pending = (work, flag)
        return previous

    def settle(self, asked: bool) -> bool:
        """Whether any rank has asked, now or at a boundary not yet read; waits for every rank to get here."""
        earlier = self.cast(asked)
        return self._outcome() or earlier

    def close(self, after_failure: bool = False) -> None:
        """Reads the vote in flight, then frees the group (a local call). At the end of a fit, or a stop,
        every rank has made the same votes, so the other ranks' shares are there or on their way.

        After a failure another rank may never launch its share (it failed in a validation step, say):
        a vote still in flight then stays with the group until the process ends, as waiting for it
        could hang, and so could freeing its group (gloo's destructor waits for the work it holds).
        """
        if after_failure and self._pending is not None and not self._pending[0].is_completed():
            return
        self._outcome()
        dist.destroy_process_group(self._group)

    def _outcome(self) -> bool:
        if self._pending is None:
            return False
        work, flag = self._pending
        self._pending = None
        work.wait()
        return flag.tolist()[0] > 0  # a host tensor: tolist reads it without an aten op (no `.item()`)
