"""README's faults table on streamed shards (`--data StreamingDataModule`, DataLoader workers): SIGTERM to
the main process or to its whole process group saves last.ckpt and exits 0; SIGKILL mid-epoch loses at
most the steps since the last checkpoint and `--ckpt_path last` finishes the run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.reliability.test_kill_and_resume import wait_for
from tests.run_helpers import smoke_args, train_subprocess
from tests.shard_helpers import shards_of, write_jpeg_folder
from tests.test_quiet_console import noise_lines
from tests.views.photos import write_photo_folder

PAUSED_AT, STEPS = 5, 8  # one step into the second epoch of 4 steps; 2 epochs


def streaming_args(shards: Path, run: Path, *extra: str, view_path: str = "per_image") -> list[str]:
    """The CPU smoke run of tests/run_helpers.py, streaming the shards (per image) with 2 workers."""
    args = smoke_args(shards, run, "--data.view_path", view_path, "--data.num_workers", "2", *extra)
    first_flag_after_configs = 5
    return [
        *args[:first_flag_after_configs],
        "--data",
        "StreamingDataModule",
        *args[first_flag_after_configs:],
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "view_path"),
    [
        ("sigterm-main", "per_image"),
        ("sigterm-group", "per_image"),
        ("sigkill-then-resume", "per_image"),
        ("sigterm-group", "batched"),  # JPEG bytes streamed per batch: images of varied sizes
    ],
)
def test_streamed_run_survives_the_faults_of_the_table(tmp_path: Path, fault: str, view_path: str) -> None:
    if view_path == "batched":
        folder = write_photo_folder(tmp_path / "images", [(20 + 3 * (n % 3), 18 + n % 2) for n in range(8)])
    else:
        folder = write_jpeg_folder(tmp_path / "images", ("a", "b"), {"train": 8, "val": 2})
    shards, run, marker, log = (
        shards_of(folder, tmp_path / "shards"),
        tmp_path / "run",
        tmp_path / "paused",
        tmp_path / "train.log",
    )
    pause = {
        "class_path": "tests.reliability.pause.PauseOnce",
        "init_args": {"step": PAUSED_AT, "marker": str(marker)},
    }
    every_step = ["--step_checkpoint.every_n_train_steps", "1"] if fault == "sigkill-then-resume" else []
    args = streaming_args(
        shards, run, *every_step, "--trainer.callbacks+", json.dumps(pause), view_path=view_path
    )
    process = train_subprocess(args, log)
    wait_for(marker, process, log)
    if fault == "sigterm-main":
        os.kill(process.pid, signal.SIGTERM)
    elif fault == "sigterm-group":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=120)
    output = log.read_text()
    assert view_path == "per_image" or "JPEG bytes streamed from the shards per batch" in output
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    if fault != "sigkill-then-resume":
        assert process.returncode == 0, output
        assert "killed by signal" not in output
        assert noise_lines(output) == []  # nothing a user cannot act on (quiet_console.py)
        assert saved["global_step"] == PAUSED_AT + 1  # the step it was in finishes, then it saves
        assert saved["StreamingDataModule"] == {"epoch": 1, "batches_done": 2}
        return
    assert process.returncode == -signal.SIGKILL
    assert saved["global_step"] == PAUSED_AT
    resumed = train_subprocess(
        ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last"], tmp_path / "resumed.log"
    )
    resumed.wait(timeout=300)
    assert resumed.returncode == 0, (tmp_path / "resumed.log").read_text()
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == STEPS
