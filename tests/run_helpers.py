"""Tiny on-disk image folders and the command line of a CPU training run that takes seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent
IMAGE_SIDE = 12


def write_image_folder(root: Path, classes: tuple[str, ...] = ("a", "b"), train_per_class: int = 8) -> Path:
    """root/train/<class>/*.png and root/val/<class>/*.png of random pixels."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", 2)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def smoke_args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """`fit` on tiny_resnet at 16 px, batch 4: 4 steps per epoch, 2 epochs, no W&B unless asked."""
    return [
        "fit",
        "--config", str(REPOSITORY / "configs" / "imagefolder.yaml"),
        "--config", str(REPOSITORY / "configs" / "cpu-smoke.yaml"),
        "--data.root", str(data_root),
        "--data.batch_size", "4",
        "--data.image_size", "16",
        "--data.num_workers", "0",
        "--trainer.limit_train_batches", "4",
        "--trainer.limit_val_batches", "1",
        "--trainer.max_epochs", "2",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_model_summary", "false",
        *extra,
    ]


def train_subprocess(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """train.py in its own process group (so a kill also reaches W&B's helper), output into `log`.

    One CPU thread: tiny models gain nothing from more, and a busy shared CPU makes them far slower.
    """
    environment = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **(env or {})}
    for inherited in ("SIMCLR_RUN_DIR", "SIMCLR_WANDB_RUN_ID"):
        environment.pop(inherited, None)
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, str(REPOSITORY / "train.py"), *args],
            cwd=REPOSITORY, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
