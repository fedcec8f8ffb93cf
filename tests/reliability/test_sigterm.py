"""SIGTERM (what schedulers send before pre-emption) saves last.ckpt and exits with status 0."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from cli import cli_main
from reliability.run_folder import newest_checkpoint, requeued_run_dir, saved_wandb_id
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder

SIGNALLED_AT = 5  # one step into the second epoch of 4 steps


class SendSigterm(pl.Callback):
    """Sends this process a real SIGTERM during a step, as a scheduler would."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == SIGNALLED_AT:
            # Lightning installs its handler for the duration of fit; without it this would kill pytest.
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path, monkeypatch, lightning_logs) -> None:
    fresh_cli_environment(monkeypatch)
    run = tmp_path / "run"
    args = smoke_args(write_image_folder(tmp_path / "images"), run, "--trainer.logger", "false")
    # The step checkpoint is far away: the checkpoint must come from the SIGTERM.
    args += ["--trainer.callbacks+", "tests.reliability.test_sigterm.SendSigterm"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code in (None, 0)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # Lightning finishes the step it was in, then stops at the step boundary.
    assert saved["global_step"] == SIGNALLED_AT + 1
    assert saved["optimizer_states"] and saved["lr_schedulers"]
    # The run began with one summary block of model, data, devices, batch and outputs.
    messages = [record.getMessage() for record in lightning_logs.records]
    summary = [message for message in messages if "Run summary" in message]
    assert len(summary) == 1
    assert "backbone tiny_resnet" in summary[0] and "16 training images, 2 classes, 16 px" in summary[0]
    assert "world size 1" in summary[0] and "global 4 = 1 x 4" in summary[0]
    assert f"checkpoints in {run / 'checkpoints'}" in summary[0]
    # Where the data order resumes: epoch 1 (the second), after its first 2 batches.
    assert saved["ImageFolderDataModule"] == {"epoch": 1, "batches_done": 2}



def test_a_requeued_slurm_job_finds_its_own_run(tmp_path: Path, monkeypatch) -> None:
    """SLURM requeues with the same job id and command: the job resumes its folder, checkpoint and W&B run."""
    monkeypatch.chdir(tmp_path)
    # What srun sets for a batch job's first step (Lightning's SLURM detection reads these).
    for name, value in {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "simclr"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    run = Path("runs") / "slurm-4242.0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("trainer:\n  logger:\n    init_args:\n      id: rsaved01\n")
    assert requeued_run_dir(None) is None  # the first incarnation: a fresh run

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert requeued_run_dir(None) == run
    assert requeued_run_dir(str(tmp_path / "elsewhere")) is None  # no run there to continue
    assert saved_wandb_id(run) == "rsaved01"
    assert newest_checkpoint(run, None) is None
    (run / "checkpoints" / "last.ckpt").write_bytes(b"older")
    hpc = run / "hpc_ckpt_1.ckpt"
    hpc.write_bytes(b"newer")
    os.utime(hpc, (1e10, 1e10))
    assert newest_checkpoint(run, None) == str(hpc)
