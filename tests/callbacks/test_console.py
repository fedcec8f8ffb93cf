from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import callbacks.throughput as throughput
from callbacks.logging_steps import is_logging_step
from callbacks.progress_bar import _significant
from callbacks.throughput import ViewsPerSecond


class LogRecorder:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float, **kwargs) -> None:
        assert kwargs["logger"] is False
        self.logged[name] = value


def fake_trainer(global_step: int, log_every_n_steps: int) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=4, global_step=global_step, log_every_n_steps=log_every_n_steps, max_steps=-1,
        num_training_batches=float("inf"),
    )  # fmt: skip


def test_views_per_second_counts_both_views_of_every_device(monkeypatch) -> None:
    clock = iter([10.0, 10.5, 11.0, 11.5])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    callback, module = ViewsPerSecond(window=2), LogRecorder()
    batch = {"view1": torch.zeros(8, 3, 2, 2)}
    callback.on_train_batch_end(fake_trainer(1, 1), module, None, batch, 0)
    assert module.logged == {}  # one timestamp is no interval yet
    for index in (1, 2, 3):
        callback.on_train_batch_end(fake_trainer(index + 1, 1), module, None, batch, index)
    # 8 images x 4 devices x 2 views every 0.5 s
    assert module.logged["views/s"] == pytest.approx(128.0)


def test_views_per_second_logs_on_logging_steps_only(monkeypatch) -> None:
    clock = iter([10.0, 10.5, 11.0, 11.5])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    callback, module = ViewsPerSecond(window=3), LogRecorder()
    batch = {"view1": torch.zeros(8, 3, 2, 2)}
    for index in (0, 1, 2):
        callback.on_train_batch_end(fake_trainer(index + 1, 4), module, None, batch, index)
    assert module.logged == {}  # steps 1-3 of 4 do not log
    callback.on_train_batch_end(fake_trainer(4, 4), module, None, batch, 3)
    assert module.logged["views/s"] == pytest.approx(128.0)


@pytest.mark.parametrize(
    "global_step,batch_idx,max_steps,num_batches,expected",
    [(9, 8, -1, 100, False), (10, 9, -1, 100, True), (7, 6, 7, 100, True), (23, 2, -1, 3, True)],
)
def test_logging_steps(global_step: int, batch_idx: int, max_steps: int, num_batches: int, expected: bool):
    trainer = SimpleNamespace(
        global_step=global_step, log_every_n_steps=5, max_steps=max_steps, num_training_batches=num_batches
    )
    assert is_logging_step(trainer, batch_idx, after_optimizer_step=True) is expected
    trainer.global_step -= 1  # in training_step, before the optimiser step
    assert is_logging_step(trainer, batch_idx, after_optimizer_step=False) is expected


def test_progress_bar_keeps_small_learning_rates_readable() -> None:
    assert _significant(0.00471234) == "0.004712"
    assert _significant(2.19123) == "2.191"
    assert _significant(7) == 7 and _significant("b9f6") == "b9f6"
