"""The module with small views: one encoder pass per view size, the multi-crop loss, the probe's features."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules.losses import multi_view_logits, multi_view_nt_xent_loss
from lightning_modules.simclr import SimCLR
from tests.lightning_modules.test_simclr import tiny_model, trainer

N, SMALL_VIEWS, SMALL_SIZE = 4, 3, 16


def multicrop_batch(seed: int = 0, small_views: int = SMALL_VIEWS) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    view1, view2 = torch.randn(2, N, 3, 32, 32, generator=generator)
    small = torch.randn(small_views, N, 3, SMALL_SIZE, SMALL_SIZE, generator=generator)
    return {"view1": view1, "view2": view2, "small_views": small, "label": torch.arange(N)}


class Fixed(Dataset):
    """The given batches, one per step: a loader with batch_size=None."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batches[index]


def first_step_outputs(tmp_path, model: SimCLR, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    outputs = {}

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, step_outputs, batch, batch_idx) -> None:
            outputs.update(step_outputs)

    fit = trainer(tmp_path, max_steps=1, log_every_n_steps=1, callbacks=[Record()], limit_val_batches=0)
    fit.fit(model, train_dataloaders=DataLoader(Fixed([batch]), batch_size=None))
    return outputs


def test_training_loss_is_the_multi_view_loss_of_views_encoded_one_size_at_a_time(tmp_path) -> None:
    model = tiny_model()
    initial = copy.deepcopy(model)  # training mode: batch norm normalises each pass with its own statistics
    batch = multicrop_batch()
    outputs = first_step_outputs(tmp_path, model, batch)

    with torch.no_grad():
        large = initial.encoder(torch.cat([batch["view1"], batch["view2"]]))
        small = initial.encoder(batch["small_views"].flatten(0, 1))
        projections = initial.projection_head(torch.cat([large, small]))
    views = projections.reshape(2 + SMALL_VIEWS, N, -1)
    expected = multi_view_nt_xent_loss(*multi_view_logits(views, 0.5))
    torch.testing.assert_close(outputs["loss"].detach(), expected)
    # The probe trains on the large views only, as without small views.
    torch.testing.assert_close(outputs["features"], large)


def test_no_small_views_is_the_two_view_step(tmp_path) -> None:
    batch = multicrop_batch()
    without = {key: value for key, value in batch.items() if key != "small_views"}
    losses = []
    for index, inputs in enumerate((without, multicrop_batch(small_views=0))):
        torch.manual_seed(0)
        losses.append(first_step_outputs(tmp_path / str(index), tiny_model(), inputs)["loss"])
    torch.testing.assert_close(losses[0], losses[1])


def test_fit_logs_health_metrics_and_the_loss_falls(tmp_path) -> None:
    pl.seed_everything(0)
    model = tiny_model(base_lr=2.0, warmup_epochs=0)
    batches = [multicrop_batch(seed) for seed in range(2)]
    losses = []

    class RecordLoss(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    fit = trainer(tmp_path, max_epochs=5, log_every_n_steps=1, callbacks=[RecordLoss()], limit_val_batches=0)
    fit.fit(model, train_dataloaders=DataLoader(Fixed(batches), batch_size=None))
    metrics = fit.callback_metrics
    assert 0.0 <= metrics["train/positive_accuracy"] <= 1.0
    assert 0.0 <= metrics["train/alignment"] <= 4.0 and -4.0 <= metrics["train/uniformity"] <= 0.0
    assert sum(losses[-2:]) < sum(losses[:2]), losses  # the same 2 batches over and over: it must fall
