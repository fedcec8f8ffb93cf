"""SIGTERM to the whole process group, as SLURM, `timeout` and Ctrl-C deliver it, with DataLoader workers.

The workers get the signal too; the run must still save last.ckpt and exit with status 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.reliability.test_kill_and_resume import wait_for
from tests.run_helpers import smoke_args, train_subprocess, write_image_folder

PAUSED_AT = 5  # one step into the second epoch of 4 steps
HANG_TIMEOUT_S = 120  # exiting takes seconds; a busy 2-core machine may need tens of them


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pause", "saved_step", "extra"),
    [
        ("PauseOnce", PAUSED_AT + 1, ()),
        ("PauseInValidation", 4, ()),
        # The uint8-cache path: training batches come without workers; validation's persistent
        # workers are alive and signalled too. W&B offline: its service process is signalled as well.
        ("PauseOnce", PAUSED_AT + 1, ("--data.gpu_augment", "true")),
    ],
    ids=["training", "validation", "cached-images-and-wandb"],
)
def test_sigterm_to_the_process_group_with_workers_saves_and_exits_0(
    tmp_path: Path, pause: str, saved_step: int, extra: tuple[str, ...]
) -> None:
    run, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "train.log"
    step = PAUSED_AT if pause == "PauseOnce" else 4  # the validation at the end of the first epoch
    callback = {
        "class_path": f"tests.reliability.pause.{pause}",
        "init_args": {"step": step, "marker": str(marker)},
    }
    args = smoke_args(
        write_image_folder(tmp_path / "images"), run, "--data.num_workers", "2",
        "--trainer.callbacks+", json.dumps(callback), *extra,
    )
    process = train_subprocess(args, log, env={"WANDB_MODE": "offline"} if extra else None)
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "killed by signal" not in output
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == saved_step
    if extra:
        assert list((run / "wandb").glob("offline-run-*")), output


@pytest.mark.slow
def test_sigterm_in_the_start_up_sanity_check_exits_and_what_it_saved_resumes(tmp_path: Path) -> None:
    """Before any step: the validation workers of the sanity check are alive, and the saved position is
    the start of the run (it was epoch -1, which the data order cannot take)."""
    images = write_image_folder(tmp_path / "images", val_per_class=4)  # 2 validation batches
    run, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "train.log"
    callback = {"class_path": "tests.reliability.pause.PauseInSanityCheck", "init_args": {"step": 0}}
    callback["init_args"]["marker"] = str(marker)
    settings = ("--data.num_workers", "2", "--trainer.limit_val_batches", "2", "--test_after_fit", "false")
    process = train_subprocess(
        smoke_args(images, run, *settings, "--trainer.callbacks+", json.dumps(callback)), log
    )
    wait_for(marker, process, log)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=HANG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running {HANG_TIMEOUT_S} s after SIGTERM:\n{log.read_text()}")
    assert process.returncode == 0, log.read_text()
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 0 and saved["ImageFolderDataModule"] == {"epoch": 0, "batches_done": 0}

    resumed_log = tmp_path / "resumed.log"
    resumed = train_subprocess(smoke_args(images, run, *settings, "--ckpt_path", "last"), resumed_log)
    resumed.wait(timeout=300)
    assert resumed.returncode == 0, resumed_log.read_text()
    finished = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert finished["global_step"] == 8
    assert finished["ImageFolderDataModule"] == {"epoch": 2, "batches_done": 0}
