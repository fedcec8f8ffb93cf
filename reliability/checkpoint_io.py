"""Checkpoints written so that a crash while saving never destroys the previous one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same folder, fsyncs it, then renames it over the target.

    The rename is atomic on POSIX file systems (and on Windows for files on one volume), so at every
    moment `last.ckpt` is either the old complete checkpoint or the new complete one; a run killed
    mid-save (SIGKILL, out of memory, pre-emption) leaves at most a stray temporary file behind, which
    the next save of that checkpoint removes. Checkpoints get the permissions the umask gives any new
    file (mkstemp's are 0600), so collaborators who can read the run folder can read them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.file_mode = 0o666 & ~_current_umask()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = f".{target.name}.", ".tmp"
        for stale in target.parent.glob(f"{prefix}*{suffix}"):  # left by a run killed while saving
            stale.unlink(missing_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        try:
            os.fchmod(descriptor, self.file_mode)
            with os.fdopen(descriptor, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)

    def load_checkpoint(
        self, path: _PATH, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Always weights_only: resuming must never run code that a crafted checkpoint carries."""
        del weights_only  # Lightning passes None (torch's default, which an environment variable can flip)
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


def _current_umask() -> int:
    """The process umask; os.umask can only read it by setting it, so it is set straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    """Makes the rename itself durable; not possible (nor needed) on Windows."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
