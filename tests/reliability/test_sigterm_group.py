"""SIGTERM to the whole process group, as SLURM, `timeout` and Ctrl-C deliver it, with DataLoader workers.

The workers get the signal too; the run must still save last.ckpt and exit with status 0.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.reliability.test_kill_and_resume import wait_for
from tests.run_helpers import smoke_args, train_subprocess, write_image_folder

PAUSED_AT = 5  # one step into the second epoch of 4 steps


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
