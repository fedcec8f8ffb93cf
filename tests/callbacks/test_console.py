from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import callbacks.throughput as throughput
from callbacks.progress_bar import _significant
from callbacks.throughput import ViewsPerSecond


class LogRecorder:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float, **kwargs) -> None:
        assert kwargs["prog_bar"] is True
        self.logged[name] = value


def test_views_per_second_counts_both_views_of_every_device(monkeypatch) -> None:
    clock = iter([10.0, 10.5, 11.0, 11.5])
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    callback, module = ViewsPerSecond(window=2), LogRecorder()
    trainer = SimpleNamespace(world_size=4)
    batch = {"view1": torch.zeros(8, 3, 2, 2)}
    callback.on_train_batch_end(trainer, module, None, batch, 0)
    assert module.logged == {}  # one timestamp is no interval yet
    for index in (1, 2, 3):
        callback.on_train_batch_end(trainer, module, None, batch, index)
    # 8 images x 4 devices x 2 views every 0.5 s
    assert module.logged["views/s"] == pytest.approx(128.0)


def test_progress_bar_keeps_small_learning_rates_readable() -> None:
    assert _significant(0.00471234) == "0.004712"
    assert _significant(2.19123) == "2.191"
    assert _significant(7) == 7 and _significant("b9f6") == "b9f6"
