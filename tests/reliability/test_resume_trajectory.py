"""A run resumed mid-epoch continues the uninterrupted run exactly: data order, learning rate, loss, probe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from tests.datamodules.in_memory import InMemoryDataModule
from tests.reliability.resume import BATCH, EPOCHS, IMAGES, SIDE, STEPS_PER_EPOCH, uninterrupted_and_resumed


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


class FixedViewsDataModule(InMemoryDataModule):
    """The real base datamodule (sampler, resume state) on the per-image path; the views are fixed."""

    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def _pretrain_images(self) -> Dataset:
        raise AssertionError("not used")

    def has_validation_split(self) -> bool:
        return True  # _eval_images validates; no slice of the (absent) training split is held out

    def _build_train_dataset(self) -> Dataset:
        return FixedViews()


def capture(trainer, outputs, batch) -> dict:
    return {
        "indices": batch["index"].tolist(),
        "lr": trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0],
        "loss": outputs["loss"].item(),
        "probe_loss": trainer.callback_metrics["train/probe_loss"].item(),
    }


def test_resumed_run_continues_the_uninterrupted_one(tmp_path: Path) -> None:
    def make_datamodule() -> FixedViewsDataModule:
        return FixedViewsDataModule(root="unused", batch_size=BATCH, num_workers=0, view_path="per_image")

    uninterrupted, resumed = uninterrupted_and_resumed(tmp_path, capture, make_datamodule)
    # A run continued from the final checkpoint (more epochs) would start with the next epoch's order.
    final = torch.load(tmp_path / "b" / "last.ckpt", weights_only=False)["FixedViewsDataModule"]
    assert final == {"epoch": EPOCHS, "batches_done": 0}
    for step, after_resume in resumed.items():
        expected = uninterrupted[step]
        assert after_resume["indices"] == expected["indices"], f"data order differs at step {step}"
        assert after_resume["lr"] == pytest.approx(expected["lr"], rel=1e-12)
        assert after_resume["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert after_resume["probe_loss"] == pytest.approx(expected["probe_loss"], rel=1e-5)
    # The second epoch is a new permutation, and the resumed run trained on the part it had not seen.
    second_epoch = [i for step in range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1)
                    for i in uninterrupted[step]["indices"]]  # fmt: skip
    assert sorted(second_epoch) == list(range(IMAGES))
    first_epoch = [i for step in range(1, STEPS_PER_EPOCH + 1) for i in uninterrupted[step]["indices"]]
    assert second_epoch != first_epoch
