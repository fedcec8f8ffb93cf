from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reliability.checkpoint_io import AtomicCheckpointIO


def test_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 3, "w": torch.arange(4.0)}, target)
    loaded = torch.load(target, weights_only=False)
    assert loaded["global_step"] == 3 and torch.equal(loaded["w"], torch.arange(4.0))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, target)

    def write_half_then_die(checkpoint, file) -> None:
        file.write(b"PK\x03\x04 half a checkpoint")
        raise MemoryError("killed while saving")

    monkeypatch.setattr(torch, "save", write_half_then_die)
    with pytest.raises(MemoryError):
        io.save_checkpoint({"global_step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
