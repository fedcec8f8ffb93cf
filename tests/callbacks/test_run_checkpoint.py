"""last.ckpt holds the run's newest state at every epoch end and at the end of fit, written once each time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from callbacks.run_checkpoint import RunCheckpoint
from cli import cli_main
from reliability.checkpoint_io import AtomicCheckpointIO
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder

STEPS_PER_EPOCH, EPOCHS, EVERY_N_STEPS = 7, 3, 5  # 5 does not divide 7: the numbers, one epoch more


class RecordedWrites(AtomicCheckpointIO):
    """Every checkpoint write of the run, as (global step, file name), in order."""

    writes: list[tuple[int, str]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        RecordedWrites.writes.append((checkpoint["global_step"], Path(path).name))


def test_last_checkpoint_is_the_final_state_when_the_step_interval_does_not_divide_the_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_cli_environment(monkeypatch)
    RecordedWrites.writes = []
    run = tmp_path / "run"
    images = write_image_folder(tmp_path / "images", train_per_class=STEPS_PER_EPOCH * 2)
    args = smoke_args(
        images, run, "--trainer.logger", "false", "--test_after_fit", "false",
        "--trainer.limit_train_batches", str(STEPS_PER_EPOCH), "--trainer.max_epochs", str(EPOCHS),
        "--step_checkpoint.every_n_train_steps", str(EVERY_N_STEPS),
        # The best checkpoint is that of the first epoch and never improves (epoch 0 is the minimum), so
        # the validation section writes no best checkpoint, hence (in Lightning) no last.ckpt, after it.
        "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min",
        "--trainer.plugins", "tests.callbacks.test_run_checkpoint.RecordedWrites",
    )  # fmt: skip
    cli_main(args)
    final = STEPS_PER_EPOCH * EPOCHS
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == final
    best = next(name for _, name in RecordedWrites.writes if name != "last.ckpt")
    # Every 5 steps and at every epoch end (7, 14, 21), each state written once.
    assert RecordedWrites.writes == [
        (5, "last.ckpt"), (7, best), (7, "last.ckpt"), (10, "last.ckpt"), (14, "last.ckpt"),
        (15, "last.ckpt"), (20, "last.ckpt"), (21, "last.ckpt"),
    ]  # fmt: skip


def test_fast_dev_run_writes_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_cli_environment(monkeypatch)
    RecordedWrites.writes = []
    args = smoke_args(write_image_folder(tmp_path / "images"), tmp_path / "run", "--trainer.logger", "false")
    args += ["--trainer.fast_dev_run", "true", "--trainer.plugins", f"{__name__}.RecordedWrites"]
    cli_main(args)
    assert RecordedWrites.writes == []


def test_checkpoints_of_plain_model_checkpoint_restore_into_run_checkpoint() -> None:
    """The state key is ModelCheckpoint's, so runs saved before RunCheckpoint keep their best scores."""
    settings = {"monitor": "val/probe_top1", "mode": "max", "every_n_train_steps": 5}
    assert RunCheckpoint(**settings).state_key == ModelCheckpoint(**settings).state_key
