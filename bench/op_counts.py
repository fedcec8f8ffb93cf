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
NON_LAUNCHING = frozenset({"aten::empty", "aten::empty_strided", "aten::empty_like", "aten::_unsafe_view"})


def is_kernel_launching(op: torch._ops.OpOverload) -> bool:
    """False for views and in-place metadata changes (unsqueeze_, detach_) and for bare allocations."""
    if op.name().split(".")[0] in NON_LAUNCHING or torch.Tag.inplace_view in op.tags:
        return False
    return not any(r.alias_info is not None and not r.alias_info.is_write for r in op._schema.returns)


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


def _launching_name(name: str) -> bool:
    """Whether a profiler event is a launching aten op; its first overload stands for the others."""
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None) if name.startswith("aten::") else None
    overloads = packet.overloads() if packet is not None else []
    return bool(overloads) and is_kernel_launching(getattr(packet, overloads[0]))


def _count_event(event: Any, counts: Counter[str]) -> int:
    """The deepest launching ops under `event` (what a dispatch mode would see: `to` is one `copy_`)."""
    found = sum(_count_event(child, counts) for child in event.cpu_children)
    if found == 0 and _launching_name(event.name):
        counts[event.name.removeprefix("aten::")] += 1
        return 1
    return found


def count_profiled_ops(fn: Callable[[], Any]) -> tuple[Counter[str], Counter[str], int]:
    """Launching aten ops of `fn()` outside and inside torch.compile'd regions, and the regions' calls.

    A TorchDispatchMode makes compiled functions fall back to eager, so compiled code is counted from
    the profiler's event tree instead, by the deepest launching op of each branch. The keys are those
    deepest ops' names (mul with a Python scalar shows as the copy_ that wraps the scalar), so only
    the totals compare with `count_aten_ops`. Inside a compiled region only the aten ops it still
    calls (extern kernels) appear; its generated kernels do not (inductor's metrics count those).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    eager: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    regions = 0
    for event in prof.events():
        if event.cpu_parent is not None:
            continue
        if event.name.startswith("Torch-Compiled Region"):
            regions += 1
            for child in event.cpu_children:
                _count_event(child, inside)
        else:
            _count_event(event, eager)
    return eager, inside, regions
