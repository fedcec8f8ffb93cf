"""SIGTERM and Ctrl-C in the main process: what each does before and during training.

- Before training (parsing, scanning the data, building the model) SIGTERM killed the process where
  it stood, leaving a run folder that holds only its lock. `exit_on_sigterm` turns it into SystemExit,
  so the invocation cleans up like any failed one (reliability/run_folder.release_run_dir).
- During fit, SIGTERM and the first Ctrl-C only record a stop request (`request_stop`); the callback
  callbacks.preemption.CheckpointOnStop turns it into Lightning's stop at the end of the current step
  (or validation batch), where it saves last.ckpt and the run exits with status 0. A second Ctrl-C
  raises KeyboardInterrupt at once. (Ctrl-C used to raise KeyboardInterrupt wherever the step was, so
  Lightning saved nothing and up to every_n_train_steps steps were lost.)

Why not Lightning's own SIGTERM handler during fit: under DDP it broadcasts from inside the handler,
so a rank interrupted inside another collective (the gradient all-reduce) pairs the two and gloo
aborts ("Received data size doesn't match expected size"). A terminal's Ctrl-C reaches every rank, a
`kill PID` only one: the ranks agree on a stop at a step boundary instead (CheckpointOnStop).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# Exit status of a process stopped by SIGTERM before training: the shell's convention, 128 + 15.
SIGTERM_EXIT_STATUS = 128 + signal.SIGTERM
CTRL_C_NOTICE = (
    "\nCtrl-C: finishing this step, then saving last.ckpt (press Ctrl-C again to stop at once, "
    "without saving).\n"
)


class _StopRequest:
    """What this process was asked during fit: None, "SIGTERM" or "Ctrl-C" (the first one asked)."""

    by: str | None = None
    ctrl_c_count = 0
    announces = True  # global rank 0 prints the Ctrl-C notice


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler of train.py outside fit: exit, with the usual clean-up of a failed invocation.

    A trainer's handler (Lightning's, installed while it runs) calls the one it found after its own;
    then this one leaves everything to it.
    """
    if signal.getsignal(signal.SIGTERM) is not exit_on_sigterm:
        return
    os.write(2, b"\nSIGTERM received before training started: stopping; nothing was trained or saved.\n")
    raise SystemExit(SIGTERM_EXIT_STATUS)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """exit_on_sigterm while the block runs (in the main thread, where handlers live), then the previous
    handler again. Lightning replaces it while a trainer runs and puts it back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def request_stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGINT handler during fit: records the request; a second Ctrl-C stops at once.

    Writes with os.write, not print or logging: a handler may interrupt a print (or hold a lock) of
    the very code it interrupts.
    """
    if signum == signal.SIGINT:
        _StopRequest.ctrl_c_count += 1
        if _StopRequest.ctrl_c_count > 1:
            raise KeyboardInterrupt
        if _StopRequest.announces:
            os.write(2, CTRL_C_NOTICE.encode())
    if _StopRequest.by is None:
        _StopRequest.by = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"


def take_stop_signals(announces: bool) -> bool:
    """From now on SIGTERM and Ctrl-C go to request_stop; False (nothing done) outside the main thread.

    A Ctrl-C that a shell set to be ignored (a job started in the background) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    _StopRequest.by, _StopRequest.ctrl_c_count, _StopRequest.announces = None, 0, announces
    signal.signal(signal.SIGTERM, request_stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, request_stop)
    return True


def stop_requested_by() -> str | None:
    return _StopRequest.by
