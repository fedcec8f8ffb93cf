"""A fit that would train nothing is refused; a resume trains at the rate it prints, or is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from cli import cli_main
from lightning_modules.optim import scaled_learning_rate, warmup_cosine
from reliability.errors import UserError
from reliability.fit_settings import check_resume_keeps_the_batch
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder
from tests.test_errors import error_line

STEPS_PER_EPOCH, BATCH = 4, 4
FIRST_LR, RESUMED_LR = 0.3, 3.0  # --model.base_lr of the first invocation and of the resume


class RecordLearningRates(pl.Callback):
    """Per step: the rate the optimiser applies, and the train/lr the module logs for it."""

    applied: dict[int, float] = {}
    logged: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        RecordLearningRates.applied[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        RecordLearningRates.logged[trainer.global_step - 1] = float(trainer.callback_metrics["train/lr"])


@pytest.fixture(autouse=True)
def fresh_process_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch)


@pytest.mark.parametrize(
    ("flag", "value", "fix"),
    [
        ("max_epochs", "0", "1 or more"),
        ("max_steps", "0", "-1 to let --trainer.max_epochs decide"),
        ("limit_train_batches", "0", "a fraction in (0, 1]"),
        ("limit_train_batches", "0.0", "a fraction in (0, 1]"),
    ],
)
def test_a_fit_that_trains_no_step_is_refused(tmp_path: Path, capsys, flag: str, value: str, fix: str):
    run = tmp_path / "run"
    line = error_line(smoke_args(tmp_path / "images", run, f"--trainer.{flag}", value), capsys)
    assert f"--trainer.{flag} {value} trains no step" in line and fix in line
    assert not run.exists()


def first_epoch(tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
    """One epoch of 4 steps into tmp_path/run; returns it and the arguments that resume it for a second."""
    images, run = write_image_folder(tmp_path / "images"), tmp_path / "run"
    common = ["--trainer.logger", "false", "--test_after_fit", "false", "--trainer.limit_val_batches", "0"]
    common += ["--trainer.log_every_n_steps", "1", *extra]
    cli_main(smoke_args(images, run, *common, "--trainer.max_epochs", "1", "--model.base_lr", str(FIRST_LR)))
    return run, smoke_args(images, run, *common, "--ckpt_path", "last")


def test_a_resume_with_another_base_lr_trains_at_the_rate_it_prints(tmp_path: Path, lightning_logs) -> None:
    run, resume = first_epoch(tmp_path)
    RecordLearningRates.applied, RecordLearningRates.logged = {}, {}
    recorder = ["--trainer.callbacks+", f"{__name__}.RecordLearningRates"]
    lightning_logs.clear()
    cli_main([*resume, "--model.base_lr", str(RESUMED_LR), *recorder])

    peak = scaled_learning_rate(RESUMED_LR, BATCH)
    total, warmup = 2 * STEPS_PER_EPOCH, 2  # cpu-smoke: warm-up 0.5 epoch
    messages = [record.getMessage() for record in lightning_logs.records]
    assert any(f"peak learning rate {peak:.4g} = base_lr {RESUMED_LR}" in message for message in messages)
    (note,) = [message for message in messages if "re-planned" in message]
    old_peak = scaled_learning_rate(FIRST_LR, BATCH)
    assert f"Resuming at step {STEPS_PER_EPOCH}" in note
    assert f"to a peak of {peak:.4g} instead of {old_peak:.4g}" in note
    assert "--model.base_lr" in note and "--trainer.max_epochs" in note  # the length changed too (1 -> 2)
    # The second epoch's rates, as applied and as logged: those of the printed peak, from its first step.
    expected = {step: peak * warmup_cosine(step, total, warmup) for step in range(STEPS_PER_EPOCH, total)}
    assert RecordLearningRates.applied == pytest.approx(expected)
    assert RecordLearningRates.logged == pytest.approx(expected)


def test_a_resume_that_would_not_apply_a_changed_setting_is_refused(tmp_path: Path, capsys) -> None:
    """The batch (steps, schedule and data position count in it), what the optimiser state keeps, and
    the number of small views (another method)."""
    run, resume = first_epoch(tmp_path)
    before = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
    was = f"Checkpoint '{run / 'checkpoints' / 'last.ckpt'}' was trained with"
    for change, expected in [
        (["--data.batch_size", "8"], "4 images per step, this resume asks for 8"),
        (["--trainer.accumulate_grad_batches", "2"], "4 images per step, this resume asks for 8"),
        (["--model.optimizer", "adamw"], "--model.optimizer lars (this resume: adamw)"),
        (["--model.weight_decay", "0.5"], "--model.weight_decay 1e-06 (this resume: 0.5)"),
        (["--model.momentum", "0.8"], "--model.momentum 0.9 (this resume: 0.8)"),
        (["--data.num_small_views", "2"], "--data.num_small_views 0 (this resume: 2)"),
    ]:
        line = error_line([*resume, *change], capsys)
        assert f"{was} {expected}" in line and "start a new run" in line
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == before  # nothing written


def test_a_checkpoint_from_before_images_per_step_was_recorded_compares_the_batch() -> None:
    old = {"hyper_parameters": {"batch_size": 256}, "lr_schedulers": [{"total_steps": 10}]}
    check_resume_keeps_the_batch("old.ckpt", old, images_per_step=512, batch=256)  # accumulation unknown
    with pytest.raises(UserError, match=r"was trained with --data.batch_size 256, .* asks for 512"):
        check_resume_keeps_the_batch("old.ckpt", old, images_per_step=512, batch=512)
