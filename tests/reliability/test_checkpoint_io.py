from __future__ import annotations

import os
import stat
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


def test_a_temporary_file_left_by_a_killed_save_is_removed_by_the_next_save(tmp_path: Path) -> None:
    stale = tmp_path / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"PK\x03\x04 a full-size checkpoint, never renamed")
    unrelated = tmp_path / ".epoch000.ckpt.abc.tmp"  # another checkpoint's save: not this one's to clean
    unrelated.write_bytes(b"in progress")
    AtomicCheckpointIO().save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".epoch000.ckpt.abc.tmp", "last.ckpt"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_checkpoints_get_the_permissions_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        io = AtomicCheckpointIO()
    finally:
        os.umask(previous)
    io.save_checkpoint({"global_step": 1}, tmp_path / "last.ckpt")
    assert stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode) == mode
