"""Ending a run's process group explicitly, before the interpreter shuts down."""

from __future__ import annotations

import torch


def destroy_process_group_if_any() -> None:
    """Destroys the default process group when one is up; a no-op in single-process runs.

    Lightning destroys it at exit only for NCCL. A gloo group (CPU DDP) left to the interpreter's
    shutdown sometimes aborts the process after a finished run ("terminate called without an active
    exception", SIGABRT): the run's work is saved, yet the process exits as crashed.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
