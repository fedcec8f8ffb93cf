from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from callbacks.finite_loss import MAX_UNCHECKED_STEPS, NonFiniteLossError, StopOnNonFiniteLoss
from tests.op_counts import count_aten_ops


def fake_trainer(global_step: int) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=global_step, log_every_n_steps=10, max_steps=-1, num_training_batches=1000,
        current_epoch=0, checkpoint_callbacks=[], precision="32-true",
    )  # fmt: skip


def test_a_non_finite_loss_is_reported_with_its_step_before_any_checkpoint_is_saved() -> None:
    callback = StopOnNonFiniteLoss()
    losses = [1.0, 2.0, float("nan"), float("inf"), 3.0]  # steps 1-5; step 3 is the first bad one

    def steps() -> None:
        for index, loss in enumerate(losses):
            outputs = {"loss": torch.tensor(loss)}
            callback.on_train_batch_end(fake_trainer(index + 1), None, outputs, None, index)

    counts = count_aten_ops(steps)
    assert counts.host_syncs() == 0  # none of these steps logs, so nothing is read on the host
    assert counts.launching() == 0  # nor does the device work for the check between logging steps
    with pytest.raises(NonFiniteLossError, match=r"became nan at step 3 .*No checkpoint had been saved yet"):
        callback.on_save_checkpoint(fake_trainer(5), None, {})


def test_finite_losses_pass_logging_steps_and_checkpoints() -> None:
    callback = StopOnNonFiniteLoss()
    for index in range(20):
        callback.on_train_batch_end(fake_trainer(index + 1), None, torch.tensor(0.5), None, index)
    callback.on_save_checkpoint(fake_trainer(20), None, {})


def test_a_logging_step_reports_the_non_finite_loss() -> None:
    callback = StopOnNonFiniteLoss()
    callback.on_train_batch_end(fake_trainer(9), None, torch.tensor(float("-inf")), None, 8)
    with pytest.raises(NonFiniteLossError, match="became -inf at step 9"):
        callback.on_train_batch_end(fake_trainer(10), None, torch.tensor(1.0), None, 9)


def test_a_found_non_finite_loss_is_reported_again_at_every_later_check() -> None:
    callback = StopOnNonFiniteLoss()
    callback.on_train_batch_end(fake_trainer(1), None, torch.tensor(float("nan")), None, 0)
    for _ in range(2):  # e.g. the checkpoint written on SIGTERM after the first report
        with pytest.raises(NonFiniteLossError, match="became nan at step 1"):
            callback.on_save_checkpoint(fake_trainer(2), None, {})


def test_a_run_that_never_logs_is_checked_every_max_unchecked_steps() -> None:
    callback = StopOnNonFiniteLoss()
    never_logs = {"log_every_n_steps": 0, "num_training_batches": 10 * MAX_UNCHECKED_STEPS}
    callback.on_train_batch_end(fake_trainer(1), None, torch.tensor(float("inf")), None, 0)
    for index in range(1, MAX_UNCHECKED_STEPS - 1):
        trainer = SimpleNamespace(**{**vars(fake_trainer(index + 1)), **never_logs})
        callback.on_train_batch_end(trainer, None, torch.tensor(1.0), None, index)
    trainer = SimpleNamespace(**{**vars(fake_trainer(MAX_UNCHECKED_STEPS)), **never_logs})
    with pytest.raises(NonFiniteLossError, match="became inf at step 1 "):
        callback.on_train_batch_end(trainer, None, torch.tensor(1.0), None, MAX_UNCHECKED_STEPS - 1)
