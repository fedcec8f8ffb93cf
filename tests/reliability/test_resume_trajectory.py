"""A run resumed mid-epoch continues the uninterrupted run exactly: data order, learning rate, loss, probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import Dataset, TensorDataset

from callbacks import OnlineLinearProbe
from datamodules.base import SimCLRDataModule
from lightning_modules.simclr import SimCLR

IMAGES, BATCH, SIDE, SEED = 24, 4, 16, 7
STEPS_PER_EPOCH, EPOCHS = IMAGES // BATCH, 2
INTERRUPTED_AFTER = STEPS_PER_EPOCH + 2  # two steps into the second epoch


class FixedViews(Dataset):
    """Views that are a function of the index alone, so the loss depends on the data order only."""

    def __init__(self) -> None:
        self.images = torch.randn(IMAGES, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        views = {"view1": image, "view2": image.flip(-1), "probe_view": image}
        return {**views, "label": index % 2, "index": index}


class FixedViewsDataModule(SimCLRDataModule):
    """The real base datamodule (sampler, resume state); only the images are fixed tensors."""

    native_image_size = SIDE

    @property
    def class_names(self) -> list[str]:
        return ["even", "odd"]

    @property
    def mean(self):
        return (0.0, 0.0, 0.0)

    @property
    def std(self):
        return (1.0, 1.0, 1.0)

    def _pretrain_images(self) -> Dataset:
        raise AssertionError("not used")

    def has_validation_split(self) -> bool:
        return True  # _eval_images validates; no slice of the (absent) training split is held out

    def _build_train_dataset(self) -> Dataset:
        return FixedViews()

    def _eval_images(self, split, transform) -> Dataset:
        return TensorDataset(torch.zeros(2, 3, SIDE, SIDE), torch.tensor([0, 1]))


class Interrupted(Exception):
    pass


class Record(pl.Callback):
    """Per optimiser step: the images of the batch, the learning rate, the loss and the probe's loss."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: dict[int, dict] = {}
        self.stop_after = stop_after

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.stop_after:
            raise Interrupted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[trainer.global_step] = {
            "indices": batch["index"].tolist(),
            "lr": trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0],
            "loss": outputs["loss"].item(),
            "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
        }


def fit(run_dir: Path, record: Record, ckpt_path: str | None = None) -> pl.Trainer:
    pl.seed_everything(SEED)
    model = SimCLR(backbone="tiny_resnet", image_size=SIDE, batch_size=BATCH, warmup_epochs=1.0, base_lr=1.0)
    datamodule = FixedViewsDataModule(root="unused", batch_size=BATCH, num_workers=0, view_path="per_image")
    every_step = ModelCheckpoint(dirpath=run_dir, every_n_train_steps=1, save_top_k=0, save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, limit_val_batches=0, logger=False,
        deterministic=True, enable_progress_bar=False, enable_model_summary=False, default_root_dir=run_dir,
        callbacks=[OnlineLinearProbe(lr=0.1), every_step, record],
        log_every_n_steps=1,  # the probe logs its loss on logging steps only; Record reads it every step
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def test_resumed_run_continues_the_uninterrupted_one(tmp_path: Path) -> None:
    uninterrupted = Record()
    fit(tmp_path / "a", uninterrupted)
    assert sorted(uninterrupted.steps) == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))

    first_part = Record(stop_after=INTERRUPTED_AFTER)
    with pytest.raises(Interrupted):
        fit(tmp_path / "b", first_part)
    saved = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == INTERRUPTED_AFTER

    resumed = Record()
    trainer = fit(tmp_path / "b", resumed, ckpt_path="last")
    assert trainer.global_step == STEPS_PER_EPOCH * EPOCHS
    # A run continued from the final checkpoint (more epochs) would start with the next epoch's order.
    final = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["FixedViewsDataModule"]
    assert final == {"epoch": EPOCHS, "batches_done": 0}
    assert sorted(resumed.steps) == list(range(INTERRUPTED_AFTER + 1, STEPS_PER_EPOCH * EPOCHS + 1))
    for step, after_resume in resumed.steps.items():
        expected = uninterrupted.steps[step]
        assert after_resume["indices"] == expected["indices"], f"data order differs at step {step}"
        assert after_resume["lr"] == pytest.approx(expected["lr"], rel=1e-12)
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    # The second epoch is a new permutation, and the resumed run trained on the part it had not seen.
    second_epoch = [i for step in range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1)
                    for i in uninterrupted.steps[step]["indices"]]
    assert sorted(second_epoch) == list(range(IMAGES))
    first_epoch = [i for step in range(1, STEPS_PER_EPOCH + 1) for i in uninterrupted.steps[step]["indices"]]
    assert second_epoch != first_epoch
