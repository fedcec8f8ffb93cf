"""Counts of the aten ops a piece of code dispatches: the host syncs and kernel launches tests can assert.

Wall times cannot be asserted in a test; these counts are exact and the same on every machine. The counts
come from a TorchDispatchMode, so they see the calling thread only (not DataLoader workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.op_counts import is_kernel_launching

# Boolean-mask indexing is dispatched as aten::index on CPU; on CUDA it runs nonzero, a host sync.
BOOLEAN_MASK_INDEX = "aten::index(boolean mask)"
# Ops that copy a value to the host and wait for the device (`.item()`, `float(t)`, `bool(t)`, nonzero...).
HOST_SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", BOOLEAN_MASK_INDEX)
# Beyond bench/op_counts.py's rule (views, in-place metadata changes, bare allocations): ops that run no
# kernel either, and the host read of a value, which these counts report as a sync instead.
NOT_KERNELS = frozenset(
    {
        "aten::new_empty",
        "aten::new_empty_strided",
        "aten::_reshape_alias",
        "aten::lift_fresh",
        "aten::set_",
        "aten::_local_scalar_dense",
    }
)


def aten_op_name(func: torch._ops.OpOverload, args: tuple) -> str:
    """The op's name ("aten::add_"); boolean-mask indexing gets a name of its own."""
    name = func._schema.name
    if name == "aten::index" and any(
        isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in args[1]
    ):
        return BOOLEAN_MASK_INDEX
    return name


class AtenOpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while it is entered; may be entered and left many times."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.non_launching: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = aten_op_name(func, args)
        self.counts[name] += 1
        if not is_kernel_launching(func) or name in NOT_KERNELS:
            self.non_launching.add(name)
        return func(*args, **(kwargs or {}))

    def result(self) -> OpCounts:
        counts = OpCounts(self.counts)
        counts.non_launching = frozenset(self.non_launching)
        return counts


class OpCounts(Counter):
    """aten op name -> calls, plus which of them run no kernel (bench/op_counts.py's one rule)."""

    non_launching: frozenset[str] = frozenset()

    def launching(self) -> int:
        """Calls of aten ops that run a kernel: all but views, metadata changes and bare allocations."""
        return sum(count for name, count in self.items() if name not in self.non_launching)

    def host_syncs(self) -> int:
        return sum(self[name] for name in HOST_SYNC_OPS)


def count_aten_ops(fn: Callable[[], Any]) -> OpCounts:
    """How often each aten op ("aten::add_", ...) runs during fn() in this thread (a collections.Counter)."""
    counter = AtenOpCounter()
    with counter:
        fn()
    return counter.result()
