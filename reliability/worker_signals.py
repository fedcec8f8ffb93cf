"""DataLoader workers leave SIGTERM and Ctrl-C to the main process, which saves a checkpoint before it exits.

SLURM, `timeout` and `kill -- -PGID` signal the whole process group, and a terminal's Ctrl-C reaches
every process of the foreground group. A worker that died of the signal would make the main process
fail with "DataLoader worker ... is killed by signal" (or "exited unexpectedly") before it could save;
a worker that ignores it keeps serving batches until the main process, having saved last.ckpt at the
next step boundary, shuts it down as at any normal end of an epoch.

A worker that ignores SIGTERM also ignores multiprocessing's terminate(). At interpreter exit,
multiprocessing terminates the daemonic children still alive, then joins them: after a SIGTERM in the
start-up sanity check left the validation workers running, the main process waited for them forever.
So at exit the daemonic children still alive are terminated first here, and those that ignore it
(DataLoader workers, which only ever read data) are killed.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers multiprocessing's exit function before ours (atexit runs LIFO)
import signal
import time

# How long daemonic children get to end on SIGTERM at exit before they are killed.
TERMINATE_GRACE_S = 0.5


def leave_stop_signals_to_main(worker_id: int) -> None:
    """worker_init_fn of every DataLoader with workers; runs after PyTorch installs its worker handlers."""
    del worker_id  # the same for every worker
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def end_daemonic_children() -> None:
    """What multiprocessing does at exit (terminate the daemonic children), then SIGKILL for the rest."""
    children = [child for child in multiprocessing.active_children() if child.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for child in children:
        child.join(timeout=max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()


atexit.register(end_daemonic_children)
