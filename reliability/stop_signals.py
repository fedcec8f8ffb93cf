"""SIGTERM and Ctrl-C in the main process: what each does before, during and after training.

During fit, Lightning's SIGTERM handler lets the current step finish and callbacks.preemption saves
last.ckpt. Around it:
- Before training (parsing, scanning the data, building the model) SIGTERM killed the process where
  it stood, leaving a run folder that holds only its lock. `exit_on_sigterm` turns it into SystemExit,
  so the invocation cleans up like any failed one (reliability/run_folder.release_run_dir).
- Ctrl-C raised KeyboardInterrupt wherever the step was, so Lightning saved nothing and up to
  every_n_train_steps steps were lost. During fit the first Ctrl-C now takes SIGTERM's path (finish
  the step, save, exit 0); a second one raises KeyboardInterrupt at once. Outside fit Ctrl-C is
  unchanged: nothing would be saved, so it stops at once.

Under DDP a terminal's Ctrl-C reaches every rank. The ranks Lightning started itself get SIGTERM from
rank 0 when it is stopped (Lightning forwards it), so they leave their first Ctrl-C to rank 0: taking
it as well would stop them twice. Ranks started by srun or torchrun each take their own, as they do a
SIGTERM sent to the whole job.
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


class _CtrlCDuringFit:
    """What the first Ctrl-C of a fit does; set by the callback that saves on SIGTERM."""

    fit_running = False
    received = False
    takes_its_own = True  # False on ranks whose SIGTERM comes from rank 0
    announces = True  # global rank 0 only


def exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM handler of train.py's process outside Lightning's: exit, with the usual clean-up.

    Lightning's handler, installed while a trainer runs, calls the one it found after its own; while
    it is installed this one leaves everything to it.
    """
    if signal.getsignal(signal.SIGTERM) is not exit_on_sigterm:
        return
    os.write(2, b"\nSIGTERM received before training started: stopping; nothing was trained or saved.\n")
    raise SystemExit(SIGTERM_EXIT_STATUS)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """exit_on_sigterm while the block runs (in the main thread, where handlers live), then the previous
    handler again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_at_step_end_on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGINT handler during fit: the first Ctrl-C becomes a SIGTERM to this process."""
    state = _CtrlCDuringFit
    if not state.fit_running or state.received:
        raise KeyboardInterrupt
    state.received = True
    if state.announces:
        os.write(2, CTRL_C_NOTICE.encode())  # not print(): a signal handler may interrupt a print
    if state.takes_its_own:
        os.kill(os.getpid(), signal.SIGTERM)


def ctrl_c_saves(takes_its_own: bool, announces: bool) -> None:
    """From the start of fit: the first Ctrl-C saves (see the module docstring)."""
    state = _CtrlCDuringFit
    state.fit_running, state.received = True, False
    state.takes_its_own, state.announces = takes_its_own, announces
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, stop_at_step_end_on_ctrl_c)


def ctrl_c_stops_at_once() -> None:
    """From the end of fit (normal or not): Ctrl-C raises KeyboardInterrupt again."""
    _CtrlCDuringFit.fit_running = False
    if signal.getsignal(signal.SIGINT) is stop_at_step_end_on_ctrl_c:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def ctrl_c_was_received() -> bool:
    return _CtrlCDuringFit.received
