"""`train.py fit` on 2 CPU processes with Lightning's `ddp` strategy, as a user runs it, then resumed.

Lightning re-launches train.py for rank 1 with the same command line; each rank parses it and picks
its run folder on its own, so this checks that they agree (cli.SIMCLR_RUN_DIR), that only rank 0
writes the config, the checkpoints and the W&B run, and that resuming continues the step count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
TRAIN_IMAGES_PER_CLASS = 8
VAL_IMAGES_PER_CLASS = 4
GLOBAL_BATCH = 8
BATCHES_PER_EPOCH = 2  # 16 training images / global batch 8
TIMEOUT_S = 300

pytestmark = pytest.mark.slow


def write_image_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_IMAGES_PER_CLASS), ("val", VAL_IMAGES_PER_CLASS)):
        for class_name in ("cat", "dog"):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


def train(workdir: Path, *arguments: str) -> str:
    """Runs train.py in `workdir` (where runs/ appears) and returns its stdout and stderr."""
    # Nothing inherited from a launcher around pytest (srun, torchrun): Lightning must launch rank 1 itself.
    inherited = ("SIMCLR_RUN_DIR", "SLURM_", "TORCHELASTIC_", "LOCAL_RANK", "WORLD_SIZE", "MASTER_")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(inherited)}
    environment.update(WANDB_MODE="offline", WANDB_SILENT="true")
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", *arguments],
        cwd=workdir, env=environment, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def test_fit_on_two_processes_writes_one_run_and_resumes_from_it(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data")
    output = train(
        tmp_path,
        "--config", str(REPO / "configs" / "imagefolder.yaml"),
        "--config", str(REPO / "configs" / "cpu-smoke.yaml"),
        "--data.root", "data",
        "--trainer.devices", "2",
        "--trainer.strategy", "ddp",
        "--data.batch_size", str(GLOBAL_BATCH),
        "--data.num_workers", "0",
        "--trainer.limit_train_batches", str(BATCHES_PER_EPOCH),
        "--trainer.limit_val_batches", "1",
    )
    # Printed by rank 0 only, with the per-device share of the global batch.
    assert output.count("SimCLR: global batch") == 1, output[-4000:]
    assert "global batch 8 = 2 device(s) x 4 images" in output
    assert "peak learning rate 0.009375 = base_lr 0.3 x 8 / 256" in output

    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, f"the ranks wrote into different run folders: {runs}"
    run = runs[0]
    assert sorted(path.name for path in run.glob("config*.yaml")) == ["config.yaml"]
    checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints and checkpoints[0].startswith("epoch000-")
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "W&B must log from rank 0 only"
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == BATCHES_PER_EPOCH

    train(
        tmp_path,
        "--config", str(run / "config.yaml"),
        "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
        "--trainer.max_epochs", "2",
        "--trainer.logger", "false",
    )
    assert [path.name for path in (tmp_path / "runs").iterdir()] == [run.name]
    resumed_configs = list(run.glob("config-resumed-*.yaml"))
    assert len(resumed_configs) == 1
    resumed_trainer = yaml.safe_load(resumed_configs[0].read_text())["trainer"]
    assert (str(resumed_trainer["devices"]), resumed_trainer["strategy"]) == ("2", "ddp")
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * BATCHES_PER_EPOCH
    assert resumed["callbacks"]["OnlineLinearProbe"].keys() == {"classifier", "optimizer"}
