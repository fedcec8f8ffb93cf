"""The ViT recipe through the real command line: fit, then resume from last.ckpt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.vision_transformer import VisionTransformer

from cli import cli_main
from tests.run_helpers import fresh_cli_environment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch, wandb_mode="offline")


def test_vit_recipe_fits_and_resumes_with_its_optimiser_state(
    tiny_image_folder: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = cli_main(
        [
            "fit",
            # The recipe's model and optimiser; cpu-smoke's trainer; a tiny ViT on the tiny image folder.
            "--config", str(CONFIGS / "cifar10-vit.yaml"),
            "--config", str(CONFIGS / "cpu-smoke.yaml"),
            "--data", "ImageFolderDataModule",
            "--data.root", str(tiny_image_folder),
            "--model.backbone", "vit_micro",
            "--trainer.logger", "false",
            "--trainer.default_root_dir", str(run_dir),
        ]
    )
    model = first.model
    assert isinstance(model.encoder, VisionTransformer) and model.encoder.patch_size == 4  # 32 px views
    hparams = model.hparams
    assert (hparams.optimizer, hparams.weight_decay, hparams.temperature) == ("adamw", 0.1, 0.2)
    assert first.trainer.global_step == 1
    optimizer = first.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.encoder.class_token) not in decayed
    assert id(model.encoder.encoder.pos_embedding) not in decayed
    assert id(model.encoder.conv_proj.weight) in decayed

    resumed = cli_main(
        ["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last", "--trainer.max_epochs", "2"]
    )
    assert resumed.trainer.global_step == 2
    # AdamW's step count continued from the checkpoint: a fresh optimiser would be at 1.
    class_token = resumed.model.encoder.class_token
    assert resumed.trainer.optimizers[0].state[class_token]["step"].item() == 2
    assert resumed.model.encoder.seq_length == 8 * 8 + 1
