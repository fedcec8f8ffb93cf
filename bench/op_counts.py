"""Counts the aten operations a function runs that launch a kernel on an accelerator.

On a GPU, small batched augmentations are paced by kernel launches, not by pixels, so the number of
launching ops is the figure to cut; counted on CPU it is the same number (eager PyTorch dispatches the
same aten ops on every device). Ops that only make a new view of existing memory (view, expand,
permute, slice, select, unsqueeze, ...) and allocations without a fill (empty, empty_strided) launch
nothing and are not counted; everything else is, in-place ops and copies included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

# Allocations whose memory is not written, and a view whose schema does not say it aliases: no kernel.
NON_LAUNCHING = frozenset(
    {"aten::empty.memory_format", "aten::empty_strided", "aten::empty_like", "aten::_unsafe_view"}
)


def is_kernel_launching(op: torch._ops.OpOverload) -> bool:
    """False for view and metadata ops (their outputs alias an input without writing) and bare allocations."""
    schema = op._schema
    if schema.name + ("." + schema.overload_name if schema.overload_name else "") in NON_LAUNCHING:
        return False
    returns_alias = any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
    return not returns_alias


def _largest_output(result: Any) -> int:
    tensors = [t for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)]
    return max((t.numel() for t in tensors), default=0)


class _Counting(TorchDispatchMode):
    def __init__(self, min_elements: int) -> None:
        super().__init__()
        self.min_elements = min_elements
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        result = func(*args, **(kwargs or {}))
        if is_kernel_launching(func) and _largest_output(result) >= self.min_elements:
            self.counts[str(func.overloadpacket.__name__) + "." + func._overloadname] += 1
        return result


def count_aten_ops(fn: Callable[[], Any], min_elements: int = 0) -> Counter[str]:
    """Kernel-launching aten ops run by `fn()`, by name ("add.Tensor": 3, ...).

    `min_elements` > 0 counts only ops with an output of at least that many elements: e.g. the ops that
    touch whole images, whose memory traffic (not their launch) sets their cost on a GPU at large sizes.
    """
    mode = _Counting(min_elements)
    with mode:
        fn()
    return mode.counts
