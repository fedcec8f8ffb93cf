from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from pytorch_lightning.callbacks import RichProgressBar

import callbacks.throughput as throughput
from callbacks.logging_steps import is_logging_step
from callbacks.progress_bar import ReadableProgressBar, _significant
from callbacks.throughput import ViewsPerSecond
from tests.op_counts import count_aten_ops


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


def test_progress_bar_shows_training_metrics_of_the_last_logging_step(monkeypatch) -> None:
    # Only this subclass's part: the Rich drawing needs a running Trainer.
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda *args: None)
    monkeypatch.setattr(RichProgressBar, "get_metrics", lambda *args: {"v_num": 3})
    bar = ReadableProgressBar(metrics=("train/loss", "views/s"))
    trainer = SimpleNamespace(
        global_step=0, log_every_n_steps=2, max_steps=-1, num_training_batches=100, training=True,
        callback_metrics={"train/loss": torch.tensor(1.23456), "other": torch.tensor(2.0)},
        loggers=[], progress_bar_metrics={},
    )  # fmt: skip
    for index, loss in enumerate((1.23456, 9.0, 0.5)):
        trainer.global_step = index + 1
        trainer.callback_metrics["train/loss"] = torch.tensor(loss)
        counts = count_aten_ops(lambda i=index: bar.on_train_batch_end(trainer, None, None, None, i))
        shown = bar.get_metrics(trainer, None)
        if index == 0:
            assert counts.host_syncs() == 0 and "train/loss" not in shown  # step 1 of 2 does not log
        if index == 1:
            assert counts.host_syncs() == 1 and shown == {"v_num": 3, "train/loss": "9"}
        if index == 2:
            assert counts.host_syncs() == 0 and shown["train/loss"] == "9"  # kept until the next logging step
