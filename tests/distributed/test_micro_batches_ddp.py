"""Micro-batches with cached gradients against DDP (gloo, CPU), with batch-norm in the encoder and head.

K micro-batches on one device normalise like K devices without SyncBN, so one process forwarding the 2N
images of a 2-process step in 2 micro-batches takes exactly that step (the README's statement). Under DDP
the micro-batches' backward passes must not all-reduce: a step all-reduces the gradients once, as many
times (buckets) as a step without micro-batches does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from callbacks import OnlineLinearProbe
from lightning_modules.simclr import SimCLR
from tests.distributed.test_ddp_equivalence import (
    GLOBAL_BATCH,
    IMAGE_SIZE,
    PER_DEVICE_BATCH,
    TRAINING_STEPS,
    WORLD_SIZE,
    PairedViews,
    fit,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*ddp_spawn.*"),
    pytest.mark.filterwarnings("ignore:.*sync_dist=True.*"),
]

# Gradient all-reduces this process has launched (one per DDP bucket).
ALL_REDUCES = [0]


def counting_all_reduce(state, bucket):  # DDP rejects (string) annotations here
    ALL_REDUCES[0] += 1
    return default_hooks.allreduce_hook(state, bucket)  # type: ignore[arg-type]


class RecordAllReducesPerStep(pl.Callback):
    """Writes `<folder>/all_reduces<R>.pt`: the gradient all-reduces of each training step on rank R.

    Registers the counting hook itself: Lightning's DDPStrategy(ddp_comm_hook=...) does so on CUDA only.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.per_step: list[int] = []
        self._before = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.strategy.model.register_comm_hook(None, counting_all_reduce)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = ALL_REDUCES[0]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.per_step.append(ALL_REDUCES[0] - self._before)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(self.per_step, self.folder / f"all_reduces{trainer.global_rank}.pt")


def batch_norm_model(micro_batch_size: int | None) -> SimCLR:
    pl.seed_everything(0, verbose=False)
    model = SimCLR(
        backbone="tiny_resnet", image_size=IMAGE_SIZE, temperature=0.5, optimizer="sgd", base_lr=0.1,
        batch_size=GLOBAL_BATCH, warmup_epochs=0.0, micro_batch_size=micro_batch_size,
    )  # fmt: skip
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.projection_head.modules()) == 1
    return model


def fit_two_processes(folder: Path, micro_batch_size: int | None) -> list[dict[str, Any]]:
    strategy = DDPStrategy(start_method="spawn")
    callbacks = [OnlineLinearProbe(lr=0.05, num_classes=2), RecordAllReducesPerStep(folder)]
    data = PairedViews.random(TRAINING_STEPS * GLOBAL_BATCH)
    fit(batch_norm_model(micro_batch_size), folder, data, callbacks, devices=WORLD_SIZE, strategy=strategy)
    ranks = [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]
    for rank, record in enumerate(ranks):
        record["all_reduces"] = torch.load(folder / f"all_reduces{rank}.pt")
    return ranks


def fit_one_process_on_the_first_step(folder: Path, ranks: list[dict[str, Any]], micro_batch_size: int):
    """One process, one step, on the images the ranks' first step saw (rank 0's, then rank 1's)."""
    view1, view2 = (torch.cat([rank["views"][view] for rank in ranks]) for view in (0, 1))
    model = copy.deepcopy(batch_norm_model(micro_batch_size))
    fit(model, folder, PairedViews(view1, view2), [], max_steps=1, limit_val_batches=0)
    return torch.load(folder / "rank0.pt")


def assert_same_step(one: dict[str, Any], ranks: list[dict[str, Any]]) -> None:
    mean_loss = torch.stack([rank["loss"] for rank in ranks]).mean()
    torch.testing.assert_close(mean_loss, one["loss"], rtol=1e-5, atol=1e-6)
    assert "projection_head.1.weight" in one["gradients"]  # the head's batch-norm
    for name, expected in one["gradients"].items():
        assert expected.abs().max() > 0, f"{name} got no gradient; the comparison would be vacuous"
        for rank in ranks:
            torch.testing.assert_close(rank["gradients"][name], expected, rtol=1e-4, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("micro-ddp")
    return {
        "whole": fit_two_processes(folder / "whole", micro_batch_size=None),
        "micro": fit_two_processes(folder / "micro", micro_batch_size=PER_DEVICE_BATCH // 2),
    }


def test_two_micro_batches_on_one_device_take_the_step_of_two_devices(two_process_runs, tmp_path) -> None:
    ranks = two_process_runs["whole"]
    one = fit_one_process_on_the_first_step(tmp_path, ranks, micro_batch_size=PER_DEVICE_BATCH)
    assert_same_step(one, ranks)
    # The premise: batch-norm makes the one-pass step on all 2N images another one.
    whole = fit_one_process_on_the_first_step(tmp_path / "whole", ranks, micro_batch_size=GLOBAL_BATCH)
    gradient = "encoder.conv1.weight"
    assert not torch.allclose(whole["gradients"][gradient], one["gradients"][gradient], rtol=1e-3)


def test_micro_batches_under_ddp_take_the_step_of_as_many_devices(two_process_runs, tmp_path) -> None:
    ranks = two_process_runs["micro"]
    one = fit_one_process_on_the_first_step(tmp_path, ranks, micro_batch_size=PER_DEVICE_BATCH // 2)
    assert_same_step(one, ranks)
    for name, weights in ranks[0]["probe"].items():
        assert torch.equal(ranks[1]["probe"][name], weights), f"the ranks' probes differ in {name}"


def test_micro_batches_all_reduce_the_gradients_once_per_step(two_process_runs) -> None:
    for whole, micro in zip(two_process_runs["whole"], two_process_runs["micro"], strict=True):
        assert len(micro["all_reduces"]) == TRAINING_STEPS and min(micro["all_reduces"]) >= 1
        assert micro["all_reduces"] == whole["all_reduces"]
