"""A callback for the DDP tests: what CheckpointOnStop's vote costs at each training and validation batch.

Wraps the callback's batch hooks on every rank and records, per call, the host reads of a tensor value
(TorchDispatchMode, as tests/test_step_syncs.py counts them) and the torch.distributed collectives it
made: on which group, and whether it waited for them. At the end of fit each rank writes its counts to
`folder`/rank<N>.json.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import pytorch_lightning as pl
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from callbacks.preemption import CheckpointOnStop
from tests.op_counts import HOST_SYNC_OPS, aten_op_name

COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "barrier",
    "all_gather",
    "all_gather_object",
    "broadcast_object_list",
    "reduce",
)


class _HostReads(TorchDispatchMode):
    def __init__(self, counts: Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if aten_op_name(func, args) in HOST_SYNC_OPS:
            self.counts["host reads"] += 1
        return func(*args, **(kwargs or {}))


class CountStopVoteCosts(pl.Callback):
    """Counts what CheckpointOnStop's `on_train_batch_end` and `on_validation_batch_end` cost, per call."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.counts: dict[str, Counter[str]] = {"train": Counter(), "validation": Counter()}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        (stopping,) = [callback for callback in trainer.callbacks if isinstance(callback, CheckpointOnStop)]
        for kind, hook in (("train", "on_train_batch_end"), ("validation", "on_validation_batch_end")):
            setattr(stopping, hook, self._counted(getattr(stopping, hook), self.counts[kind]))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = {kind: dict(counter) for kind, counter in self.counts.items()}
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(counts))

    @staticmethod
    def _counted(hook: Callable[..., None], counts: Counter[str]) -> Callable[..., None]:
        def recording(collective: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                group = kwargs.get("group")
                counts["default group" if group in (None, dist.group.WORLD) else "own group"] += 1
                counts["async" if kwargs.get("async_op") else "blocking"] += 1
                return collective(*args, **kwargs)

            return call

        def counted_hook(*args: Any, **kwargs: Any) -> None:
            counts["calls"] += 1
            with ExitStack() as patches:
                for name in COLLECTIVES:
                    patches.enter_context(mock.patch.object(dist, name, recording(getattr(dist, name))))
                patches.enter_context(_HostReads(counts))
                hook(*args, **kwargs)

        return counted_hook
