"""Tiny on-disk image folders, the command line of a CPU training run that takes seconds, and a clean
environment for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reliability.errors import DEBUG_ENV
from reliability.run_folder import RUN_DIR_ENV, WANDB_ID_ENV

REPOSITORY = Path(__file__).resolve().parent.parent
IMAGE_SIDE = 12


def fresh_cli_environment(monkeypatch: pytest.MonkeyPatch, wandb_mode: str = "disabled") -> None:
    """cli_main records the run folder and W&B id in the environment for DDP workers, and W&B reads its
    mode from it: an in-process run starts from none of an earlier test's, with W&B off (or offline,
    for tests that read what it writes locally)."""
    monkeypatch.setenv("WANDB_MODE", wandb_mode)
    for name in (RUN_DIR_ENV, WANDB_ID_ENV, DEBUG_ENV):
        monkeypatch.delenv(name, raising=False)


def write_image_folder(
    root: Path,
    classes: tuple[str, ...] = ("a", "b"),
    train_per_class: int = 8,
    val_per_class: int = 2,
    image_side: int = IMAGE_SIDE,
) -> Path:
    """root/{train,val}/<class>/*.png; each class has its own base colour plus noise, so it is learnable."""
    rng = np.random.default_rng(0)
    base_colours = {name: rng.integers(0, 256, size=3) for name in classes}
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                noise = rng.integers(-40, 40, size=(image_side, image_side, 3))
                pixels = np.clip(base_colours[name] + noise, 0, 255).astype(np.uint8)
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
