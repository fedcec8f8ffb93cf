"""Counting the aten operations a piece of code dispatches: kernel launches and host syncs, on CPU.

Wall times cannot be asserted in tests, but the number of kernels a step launches (what sets the pace
of small batches on a GPU) and the number of host synchronisations can: both are properties of the
code, the same on CPU and GPU. `count_aten_ops` records every aten operation below the autograd layer
with a `TorchDispatchMode`; `launching` keeps those that run a kernel:

- an operation counts unless all of its outputs are views of an input (its schema marks every return
  as a non-written alias: view, reshape-as-view, permute, expand, slice, select, unbind, transpose,
  squeeze/unsqueeze, detach, alias ...) or it is in METADATA_ONLY (allocations without a kernel and
  metadata rewrites such as `_unsafe_view`);
- in-place operations (returns that alias an input and are written) count, as does every copy.

Host syncs are the operations that read a device value into Python: `aten::_local_scalar_dense` (from
`.item()`, `float(t)`, `int(t)`, `bool(t)`) and `aten::nonzero` (boolean-mask indexing, `nonzero`,
`torch.where` with one argument), see HOST_SYNCS.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Allocations and metadata rewrites that dispatch as operations but launch no kernel.
METADATA_ONLY = frozenset(
    {
        "aten::empty",
        "aten::empty_like",
        "aten::empty_strided",
        "aten::new_empty",
        "aten::new_empty_strided",
        "aten::_unsafe_view",
        "aten::lift_fresh",
        "aten::_reshape_alias",
        "aten::set_",
    }
)
HOST_SYNCS = frozenset({"aten::_local_scalar_dense", "aten::nonzero", "aten::nonzero_static"})


def is_view(op: torch._ops.OpOverload) -> bool:
    """Every return of the operation is an alias of an input that it does not write to."""
    returns = op._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def launches_kernel(op: torch._ops.OpOverload) -> bool:
    return not is_view(op) and op._schema.name not in METADATA_ONLY


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.views: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func._schema.name
        (self.ops if launches_kernel(func) else self.views)[name] += 1
        return func(*args, **(kwargs or {}))


def count_aten_ops(fn: Callable[[], Any], include_views: bool = False) -> Counter[str]:
    """Kernel-launching aten operations of one call of fn, by name (e.g. "aten::mul").

    With include_views, views and METADATA_ONLY operations are counted as well (e.g. "aten::lift_fresh",
    which marks a tensor built from Python values: on an accelerator, a blocking copy).
    """
    with _Recorder() as recorder:
        fn()
    return recorder.ops + recorder.views if include_views else recorder.ops


def count_host_syncs(fn: Callable[[], Any]) -> Counter[str]:
    """The host-synchronising operations of one call of fn, by name; empty when there are none."""
    counts = count_aten_ops(fn)
    return Counter({name: n for name, n in counts.items() if name in HOST_SYNCS})
