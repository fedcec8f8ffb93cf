"""DataLoader workers leave SIGTERM to the main process, which saves a checkpoint before it exits.

SLURM, `timeout` and `kill -- -PGID` signal the whole process group. A worker that died of the
signal would make the main process fail with "DataLoader worker ... is killed by signal" before it
could save; a worker that ignores it keeps serving batches until the main process, having saved
last.ckpt at the next step boundary, shuts it down as at any normal end of an epoch.
"""

from __future__ import annotations

import signal


def ignore_sigterm(worker_id: int) -> None:
    """worker_init_fn of every DataLoader with workers; runs after PyTorch installs its worker handlers."""
    del worker_id  # the same for every worker
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
