"""RankMeMonitor: the effective rank of the whole validation split, and one warning when it collapses."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.rankme import RankMeMonitor
from datamodules import ImageFolderDataModule
from evaluation.data import extract_features
from lightning_modules.health import rankme
from lightning_modules.simclr import SimCLR
from tests.evaluation.conftest import write_colour_tree

WIDTH = 8


def features_of(count: int, seed: int = 0) -> Tensor:
    """Rows with a decaying spectrum, like real features: RankMe well inside (1, WIDTH)."""
    return torch.randn(count, WIDTH, generator=torch.Generator().manual_seed(seed)) * torch.logspace(
        0, -1, WIDTH
    )


def expected_rankme(features: Tensor) -> float:
    return rankme(torch.linalg.svdvals(features.double())).item()


class FeaturesPerEpoch(pl.LightningModule):
    """validation_step returns the batch's rows, multiplied by `scales[epoch]` ([WIDTH] per epoch) to
    stretch or flatten the spectrum; one parameter so that fit has something to train."""

    def __init__(self, scales: list[Tensor] | None = None) -> None:
        super().__init__()
        self.feature_dim = WIDTH
        self.scales = scales
        self.weight = nn.Parameter(torch.zeros(()))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        return self.weight * batch[0].mean()

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> dict[str, Tensor]:
        rows = batch[0]
        if self.scales is not None:
            rows = rows * self.scales[self.current_epoch]
        return {"features": rows, "labels": torch.zeros(len(rows), dtype=torch.long)}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def quiet_trainer(tmp_path: Path, callbacks: list[pl.Callback], **overrides) -> pl.Trainer:
    settings = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path, callbacks=callbacks,
    )  # fmt: skip
    settings.update(overrides)
    return pl.Trainer(**settings)


def test_validate_logs_the_rank_of_every_batch_together(tmp_path: Path) -> None:
    rows = features_of(50)
    data = DataLoader(TensorDataset(rows), batch_size=7)  # uneven batches: the sum must cover all
    logged = quiet_trainer(tmp_path, [RankMeMonitor()]).validate(FeaturesPerEpoch(), data)[0]["val/rankme"]
    assert logged == pytest.approx(expected_rankme(rows), rel=1e-5)
    assert 1.5 < logged < WIDTH - 0.5  # neither extreme, so the comparison means something
    assert logged != pytest.approx(expected_rankme(rows[:7]), rel=1e-3)  # not the last batch alone


def test_the_simclr_encoders_validation_features_are_measured(tmp_path: Path) -> None:
    root = write_colour_tree(tmp_path / "images")
    pl.seed_everything(0)
    model = SimCLR(backbone="tiny_resnet", image_size=32, batch_size=16, warmup_epochs=0)
    datamodule = ImageFolderDataModule(str(root), batch_size=16, num_workers=0, image_size=32)
    logged = quiet_trainer(tmp_path, [RankMeMonitor()]).validate(model, datamodule=datamodule)[0]
    features, _ = extract_features(model.encoder, datamodule.val_dataloader(), "cpu")
    assert logged["val/rankme"] == pytest.approx(expected_rankme(features), rel=1e-4)


def collapse_run(tmp_path: Path, scales: list[Tensor], monitor: RankMeMonitor, **overrides) -> list[str]:
    data = DataLoader(TensorDataset(features_of(40)), batch_size=10)
    trainer = quiet_trainer(tmp_path, [monitor], max_epochs=len(scales), limit_train_batches=1, **overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(FeaturesPerEpoch(scales), data, data)
    return [str(w.message) for w in caught if "collapse" in str(w.message)]


SPREAD = torch.ones(WIDTH)  # the spectrum of features_of
FLAT = torch.tensor([1.0] + [1e-4] * (WIDTH - 1))  # one direction left: RankMe near 1


def test_one_warning_when_the_rank_falls_below_half_the_runs_highest(tmp_path: Path) -> None:
    monitor = RankMeMonitor()
    messages = collapse_run(tmp_path, [SPREAD, SPREAD, FLAT, FLAT], monitor)
    assert len(messages) == 1, messages
    assert "val/rankme fell to 1." in messages[0] and "--model.base_lr" in messages[0]
    assert monitor.highest == pytest.approx(expected_rankme(features_of(40)), rel=1e-5)
    # A healthy dip (the whole spectrum a little flatter, RankMe at ~0.8 of its highest) says nothing.
    dip = torch.logspace(0, -0.3, WIDTH)
    assert collapse_run(tmp_path, [SPREAD, dip, SPREAD], RankMeMonitor()) == []
    assert collapse_run(tmp_path, [SPREAD, FLAT], RankMeMonitor(collapse_fraction=0)) == []


def test_a_resumed_run_remembers_the_highest_rank(tmp_path: Path) -> None:
    first = RankMeMonitor()
    collapse_run(tmp_path, [SPREAD], first)
    resumed = RankMeMonitor()
    resumed.load_state_dict(first.state_dict())
    # Its only validation is collapsed; without the saved highest it would be its own reference.
    assert len(collapse_run(tmp_path, [FLAT], resumed)) == 1


def test_rejects_a_fraction_outside_0_1() -> None:
    with pytest.raises(ValueError, match="--rankme.collapse_fraction"):
        RankMeMonitor(collapse_fraction=1.0)
