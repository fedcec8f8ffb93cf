"""Ctrl-C saves like SIGTERM (a second one stops at once); SIGTERM before training leaves nothing behind.

Signals go to the whole process group, as a terminal sends Ctrl-C and a scheduler SIGTERM, so the
DataLoader workers get them too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from reliability.stop_signals import SIGTERM_EXIT_STATUS
from tests.reliability.test_kill_and_resume import wait_for
from tests.run_helpers import smoke_args, train_subprocess, write_image_folder

PAUSED_AT = 5  # one step into the second epoch of 4 steps
EXIT_TIMEOUT_S = 120  # exiting takes seconds; a busy 2-core machine may need tens of them


def paused_run(tmp_path: Path, pause: str, *extra: str, env: dict[str, str] | None = None):
    """A training subprocess with 2 workers that waits at step PAUSED_AT (tests/reliability/pause.py)."""
    run, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "train.log"
    callback = {"class_path": f"tests.reliability.pause.{pause}", "init_args": {"step": PAUSED_AT}}
    callback["init_args"]["marker"] = str(marker)
    args = smoke_args(
        write_image_folder(tmp_path / "images"), run, "--data.num_workers", "2", "--test_after_fit", "false",
        "--trainer.callbacks+", json.dumps(callback), *extra,
    )  # fmt: skip
    return train_subprocess(args, log, env=env), run, marker, log


def exit_status(process: subprocess.Popen, log: Path) -> int:
    try:
        return process.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running {EXIT_TIMEOUT_S} s after the signal:\n{log.read_text()}")


def saved_step(run: Path) -> int:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


@pytest.mark.slow
def test_ctrl_c_finishes_the_step_saves_and_exits_0(tmp_path: Path) -> None:
    process, run, marker, log = paused_run(tmp_path, "PauseOnce")
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGINT)
    assert exit_status(process, log) == 0, log.read_text()
    output = log.read_text()
    assert "Ctrl-C: finishing this step, then saving last.ckpt" in output
    assert f"Ctrl-C received: saved {run / 'checkpoints' / 'last.ckpt'} at step {PAUSED_AT + 1}" in output
    assert "--ckpt_path last" in output and "Traceback" not in output and "unexpectedly" not in output
    assert saved_step(run) == PAUSED_AT + 1


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path: Path) -> None:
    process, run, marker, log = paused_run(tmp_path, "PauseAfterStopSignal")
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGINT)
    wait_for(Path(f"{marker}.stopping"), process, log)  # the step now takes minutes to finish
    os.killpg(process.pid, signal.SIGINT)
    assert exit_status(process, log) != 0
    assert saved_step(run) == 4  # the end of the first epoch: nothing saved after the second Ctrl-C


@pytest.mark.slow
def test_sigterm_while_the_data_is_scanned_leaves_no_run_folder(tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    process, run, _, log = paused_run(
        tmp_path, "PauseOnce", "--data", "tests.reliability.pause.ImageFolderPausedInSetup",
        env={"PAUSE_MARKER": str(marker)},
    )  # fmt: skip
    wait_for(marker, process, log)
    assert (run / ".run.lock").is_file()
    os.killpg(process.pid, signal.SIGTERM)
    assert exit_status(process, log) == SIGTERM_EXIT_STATUS
    assert "SIGTERM received before training started" in log.read_text()
    assert not run.exists()
