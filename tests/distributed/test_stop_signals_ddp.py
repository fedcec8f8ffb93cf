"""A stop signal under DDP: every rank stops at the same step boundary, last.ckpt is saved, exit 0.

A terminal's Ctrl-C reaches every rank; `kill PID` (or an out-of-memory killer's SIGTERM) only the main
one. Lightning's own SIGTERM handler broadcast from inside the handler: with rank 1 waiting in the
gradient all-reduce for a slow rank 0, gloo aborted with a collective mismatch and nothing was saved.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.reliability.test_kill_and_resume import wait_for
from tests.reliability.test_stop_signals import EXIT_TIMEOUT_S, PAUSED_AT, exit_status, saved_step
from tests.run_helpers import smoke_args, train_subprocess, write_image_folder

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("to_group", "stop", "named"),
    [(True, signal.SIGINT, "Ctrl-C"), (False, signal.SIGTERM, "SIGTERM")],
    ids=["ctrl-c-to-every-rank", "sigterm-to-rank-0"],
)
def test_a_stop_signal_saves_once_for_all_ranks(tmp_path: Path, to_group: bool, stop: int, named: str):
    images = write_image_folder(tmp_path / "images", train_per_class=16, image_side=16)
    run, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "train.log"
    pause = {"class_path": "tests.reliability.pause.PauseOnRankZero", "init_args": {"step": PAUSED_AT}}
    pause["init_args"]["marker"] = str(marker)
    args = smoke_args(
        images, run, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--data.batch_size", "8",
        "--data.num_workers", "0", "--test_after_fit", "false", "--trainer.callbacks+", json.dumps(pause),
    )  # fmt: skip
    process = train_subprocess(args, log, env={"WANDB_MODE": "disabled"})
    wait_for(marker, process, log, timeout=EXIT_TIMEOUT_S * 2)
    if to_group:
        os.killpg(process.pid, stop)
    else:
        os.kill(process.pid, stop)
    assert exit_status(process, log) == 0, log.read_text()
    output = log.read_text()
    assert output.count(f"{named} received: saved") == 1 and "mismatch" not in output
    assert saved_step(run) == PAUSED_AT + 1
