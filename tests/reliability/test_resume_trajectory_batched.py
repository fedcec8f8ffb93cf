"""On the batched view path too, a run resumed mid-epoch trains exactly the batches, images and views,
that the uninterrupted run trained (the per-image path's test is test_resume_trajectory.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import Dataset, TensorDataset

from callbacks import OnlineLinearProbe
from datamodules.base import SimCLRDataModule
from datamodules.uint8_cache import CachedImages
from lightning_modules.simclr import SimCLR

IMAGES, BATCH, SIDE, SEED = 24, 4, 16, 7
STEPS_PER_EPOCH, EPOCHS = IMAGES // BATCH, 2
INTERRUPTED_AFTER = STEPS_PER_EPOCH + 2  # two steps into the second epoch


class RandomImagesDataModule(SimCLRDataModule):
    """The real base datamodule on the default (batched) path; the images are random uint8 tensors."""

    native_image_size = SIDE

    @property
    def class_names(self) -> list[str]:
        return ["even", "odd"]

    @property
    def mean(self):
        return (0.5, 0.5, 0.5)

    @property
    def std(self):
        return (0.25, 0.25, 0.25)

    def _pretrain_images(self) -> Dataset:
        images = torch.randint(0, 256, (IMAGES, 3, SIDE, SIDE), generator=torch.Generator().manual_seed(0))
        return list(zip(images.to(torch.uint8), (torch.arange(IMAGES) % 2).tolist(), strict=True))

    def _eval_images(self, split, transform) -> Dataset:
        return TensorDataset(torch.zeros(2, 3, SIDE, SIDE), torch.tensor([0, 1]))


class Interrupted(Exception):
    pass


class Record(pl.Callback):
    """Per optimiser step: the views and labels of the batch, the loss and the probe's loss."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: dict[int, dict] = {}
        self.stop_after = stop_after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.stop_after:
            raise Interrupted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[trainer.global_step] = {
            **{name: batch[name].clone() for name in ("view1", "view2", "probe_view", "label")},
            "loss": outputs["loss"].item(),
            "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
        }


def fit(run_dir: Path, record: Record, ckpt_path: str | None = None) -> pl.Trainer:
    pl.seed_everything(SEED)
    model = SimCLR(backbone="tiny_resnet", image_size=SIDE, batch_size=BATCH, warmup_epochs=1.0, base_lr=1.0)
    datamodule = RandomImagesDataModule(root="unused", batch_size=BATCH, num_workers=0, probe_view=True)
    every_step = ModelCheckpoint(dirpath=run_dir, every_n_train_steps=1, save_top_k=0, save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, limit_val_batches=0, logger=False,
        deterministic=True, enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir,
        log_every_n_steps=1,  # the probe logs its loss on logging steps only; Record reads it every step
        callbacks=[OnlineLinearProbe(lr=0.1), every_step, record],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    assert isinstance(datamodule.train_dataset, CachedImages)
    return trainer


def test_resumed_batched_run_trains_the_same_images_and_views(tmp_path: Path) -> None:
    uninterrupted = Record()
    fit(tmp_path / "a", uninterrupted)
    assert sorted(uninterrupted.steps) == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))

    first_part = Record(stop_after=INTERRUPTED_AFTER)
    with pytest.raises(Interrupted):
        fit(tmp_path / "b", first_part)
    resumed = Record()
    trainer = fit(tmp_path / "b", resumed, ckpt_path="last")
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    assert sorted(resumed.steps) == list(range(INTERRUPTED_AFTER + 1, STEPS_PER_EPOCH * EPOCHS + 1))
    for step, after_resume in resumed.steps.items():
        expected = uninterrupted.steps[step]
        for name in ("view1", "view2", "probe_view", "label"):
            assert torch.equal(after_resume[name], expected[name]), f"{name} differs at step {step}"
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    # Every step of the run drew its own views: the two epochs are not replays of each other.
    first, second = uninterrupted.steps[1]["view1"], uninterrupted.steps[STEPS_PER_EPOCH + 1]["view1"]
    assert not torch.equal(first, second)
