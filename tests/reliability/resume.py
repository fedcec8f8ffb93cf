"""A run interrupted mid-epoch and resumed from its last checkpoint, beside the uninterrupted run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from callbacks import OnlineLinearProbe
from lightning_modules.simclr import SimCLR

IMAGES, BATCH, SIDE, SEED = 24, 4, 16, 7
STEPS_PER_EPOCH, EPOCHS = IMAGES // BATCH, 2
INTERRUPTED_AFTER = STEPS_PER_EPOCH + 2  # two steps into the second epoch

Capture = Callable[[pl.Trainer, dict, dict], dict]


class Interrupted(Exception):
    """Stands for a crash: raised before a step, after the previous step's checkpoint was written."""


class StepRecorder(pl.Callback):
    """What `capture(trainer, outputs, batch)` returns, per optimiser step; crashes before `stop_after`."""

    def __init__(self, capture: Capture, stop_after: int | None = None) -> None:
        self.capture, self.stop_after = capture, stop_after
        self.steps: dict[int, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.stop_after:
            raise Interrupted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[trainer.global_step] = self.capture(trainer, outputs, batch)


def fit(
    run_dir: Path, recorder: StepRecorder, datamodule: pl.LightningDataModule, ckpt_path: str | None = None
) -> pl.Trainer:
    """SimCLR with the online probe, a checkpoint after every step, 2 epochs."""
    pl.seed_everything(SEED)
    model = SimCLR(backbone="tiny_resnet", image_size=SIDE, batch_size=BATCH, warmup_epochs=1.0, base_lr=1.0)
    every_step = ModelCheckpoint(dirpath=run_dir, every_n_train_steps=1, save_top_k=0, save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, limit_val_batches=0, logger=False,
        deterministic=True, enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir,
        log_every_n_steps=1,  # the probe logs on logging steps only; the recorder reads it every step
        callbacks=[OnlineLinearProbe(lr=0.1), every_step, recorder],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def uninterrupted_and_resumed(
    tmp_path: Path, capture: Capture, make_datamodule: Callable[[], pl.LightningDataModule]
) -> tuple[dict[int, dict], dict[int, dict]]:
    """Per step, what `capture` saw in the uninterrupted run and in the run resumed after a crash; the
    resumed run's steps are those after INTERRUPTED_AFTER."""
    uninterrupted = StepRecorder(capture)
    fit(tmp_path / "a", uninterrupted, make_datamodule())
    assert sorted(uninterrupted.steps) == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))

    with pytest.raises(Interrupted):
        fit(tmp_path / "b", StepRecorder(capture, stop_after=INTERRUPTED_AFTER), make_datamodule())
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["global_step"] == INTERRUPTED_AFTER

    resumed = StepRecorder(capture)
    trainer = fit(tmp_path / "b", resumed, make_datamodule(), ckpt_path="last")
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    assert sorted(resumed.steps) == list(range(INTERRUPTED_AFTER + 1, STEPS_PER_EPOCH * EPOCHS + 1))
    return uninterrupted.steps, resumed.steps


# What the batched paths' resume tests record per step, besides the losses.
RECORDED_VIEWS = ("view1", "view2", "probe_view", "label")


def capture_views_and_losses(
    trainer: pl.Trainer, outputs: dict, batch: dict, recorded: Sequence[str] = RECORDED_VIEWS
) -> dict:
    return {
        **{name: batch[name].clone() for name in recorded},
        "loss": outputs["loss"].item(),
        "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
    }


def assert_same_views_and_losses(
    uninterrupted: dict[int, dict], resumed: dict[int, dict], recorded: Sequence[str] = RECORDED_VIEWS
) -> None:
    """Every step after the resume saw exactly the uninterrupted run's views, labels and losses;
    every step of the run drew its own views (the two epochs are not replays of each other)."""
    for step, after_resume in resumed.items():
        expected = uninterrupted[step]
        for name in recorded:
            assert torch.equal(after_resume[name], expected[name]), f"{name} differs at step {step}"
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    first, second = uninterrupted[1]["view1"], uninterrupted[STEPS_PER_EPOCH + 1]["view1"]
    assert not torch.equal(first, second)
