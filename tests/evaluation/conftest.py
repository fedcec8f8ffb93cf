"""A tiny labelled image tree and a SimCLR checkpoint pretrained on it, shared by the evaluation tests.

The checkpoint comes from the real command line (cli.cli_main fit with configs/cpu-smoke.yaml), made
once per session so every evaluation command is tested against what train.py actually writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli import cli_main

CLASS_COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}
TRAIN_PER_CLASS = 12
TEST_PER_CLASS = 4


@dataclass(frozen=True)
class PretrainedRun:
    data_root: Path
    run_dir: Path
    checkpoint: Path


def write_colour_tree(root: Path, seed: int = 0) -> Path:
    """root/{train,test}/<colour>/*.png: noisy images whose mean colour is their class."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for name, colour in CLASS_COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                noise = rng.integers(-25, 26, size=(32, 32, 3))
                pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def data_flags(root: Path) -> list[str]:
    return [
        "--data",
        "ImageFolderDataModule",
        "--data.root",
        str(root),
        "--data.image_size",
        "32",
        "--data.batch_size",
        "16",
        "--data.num_workers",
        "0",
    ]


def pretrain_arguments(root: Path, run_dir: Path) -> list[str]:
    """cpu-smoke after the data class (its data section only overrides init_args), then tiny batches."""
    data = data_flags(root)
    return [
        "fit",
        *data[:2],
        "--config",
        "configs/cpu-smoke.yaml",
        *data[2:],
        "--trainer.logger",
        "false",
        "--trainer.default_root_dir",
        str(run_dir),
    ]


def pretrain(base: Path, *extra: str) -> PretrainedRun:
    """A short pretraining run on a fresh colour tree under `base`; `extra` flags follow the defaults."""
    root = write_colour_tree(base / "images")
    run_dir = base / "run"
    saved_environment = dict(os.environ)
    try:
        cli_main([*pretrain_arguments(root, run_dir), *extra])
    finally:
        # cli_main records the run folder and the W&B mode in the environment for DDP workers.
        os.environ.clear()
        os.environ.update(saved_environment)
    return PretrainedRun(root, run_dir, run_dir / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory: pytest.TempPathFactory) -> PretrainedRun:
    return pretrain(tmp_path_factory.mktemp("pretrained"))
