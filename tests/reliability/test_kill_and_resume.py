"""A real training process killed mid-epoch resumes with --ckpt_path last and finishes the same schedule."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.simclr import SimCLR
from reliability.code_version import code_version
from reliability.run_folder import RUN_DIR_ENV, release_run_dir, resolve_run_dir
from tests.run_helpers import fresh_cli_environment, smoke_args, train_subprocess, write_image_folder

STEPS_PER_EPOCH, EPOCHS = 4, 2
KILLED_AT = STEPS_PER_EPOCH + 2  # two steps into the second epoch


def wait_for(path: Path, process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"training exited with {process.returncode} before {path}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def wandb_run_ids(run_dir: Path) -> list[str]:
    return sorted(folder.name.rsplit("-", 1)[1] for folder in (run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes_the_run(tmp_path: Path) -> None:
    images, run = write_image_folder(tmp_path / "images"), tmp_path / "run"
    marker = tmp_path / "paused"
    pause = {"class_path": "tests.reliability.pause.PauseOnce", "init_args": {"step": KILLED_AT}}
    pause["init_args"]["marker"] = str(marker)
    every_step = ("--step_checkpoint.every_n_train_steps", "1")
    args = smoke_args(images, run, *every_step, "--trainer.callbacks+", json.dumps(pause))
    # W&B offline is part of the subject: the resumed process must log to the same W&B run.
    offline = {"WANDB_MODE": "offline"}
    first = train_subprocess(args, tmp_path / "first.log", env=offline)
    wait_for(marker, first, tmp_path / "first.log")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL

    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == KILLED_AT
    config = yaml.safe_load((run / "config.yaml").read_text())
    wandb_id = config["trainer"]["logger"]["init_args"]["id"]

    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last"]
    resumed = train_subprocess(resume, tmp_path / "resumed.log", env=offline)
    resumed.wait(timeout=300)
    output = (tmp_path / "resumed.log").read_text()
    assert resumed.returncode == 0, output
    assert f"Restored all states from the checkpoint at {last}" in output
    finished = torch.load(last, map_location="cpu", weights_only=False)
    assert finished["global_step"] == STEPS_PER_EPOCH * EPOCHS
    model = SimCLR.load_from_checkpoint(last, map_location="cpu")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, model.feature_dim)
    assert list((run / "checkpoints").glob(".*.tmp")) == []  # no half-written checkpoint left behind
    assert wandb_run_ids(run) == [wandb_id, wandb_id]
    # The resumed process sent the full config and the code version to the run. (The killed process's
    # offline records are whatever W&B had flushed before SIGKILL, possibly nothing.)
    commit = code_version()["git_commit"]
    resumed_events = sorted((run / "wandb").glob("offline-run-*/run-*.wandb"))[-1]
    assert f'"git_commit":"{commit}"'.encode() in resumed_events.read_bytes()


def group_members(group: int) -> list[int]:
    """Live processes of a process group (here: the killed run's DataLoader workers)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_sigkill_of_the_main_process_frees_its_folder_at_once(tmp_path: Path, monkeypatch) -> None:
    """An out-of-memory kill hits the main process only; its DataLoader workers live on a few seconds
    (until their watchdog sees the parent gone). An automatic restart at once must not be refused."""
    fresh_cli_environment(monkeypatch)
    images, run, marker = write_image_folder(tmp_path / "images"), tmp_path / "run", tmp_path / "paused"
    pause = {"class_path": "tests.reliability.pause.PauseOnce", "init_args": {"step": 2}}
    pause["init_args"]["marker"] = str(marker)
    quick = ("--trainer.limit_val_batches", "0", "--test_after_fit", "false", "--trainer.logger", "false")
    args = smoke_args(images, run, *quick, "--step_checkpoint.every_n_train_steps", "1",
                      "--data.num_workers", "2", "--trainer.callbacks+", json.dumps(pause))  # fmt: skip
    first = train_subprocess(args, tmp_path / "first.log")
    try:
        wait_for(marker, first, tmp_path / "first.log")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        assert group_members(first.pid), "the workers were expected to outlive the main process briefly"
        # What a restart checks first, made at once (a restart's imports take longer than the workers live).
        assert resolve_run_dir("fit", str(run), resuming=True) == run
        release_run_dir()
        os.environ.pop(RUN_DIR_ENV)  # set by resolve_run_dir for the ranks of the run
        resumed = train_subprocess([*args[:-2], "--ckpt_path", "last"], tmp_path / "resumed.log")
        resumed.wait(timeout=300)
        assert resumed.returncode == 0, (tmp_path / "resumed.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
    finished = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert finished["global_step"] == STEPS_PER_EPOCH * EPOCHS
