"""The multi-crop and SimCLR v2 recipes through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cli import cli_main
from datamodules.encoded import EncodedImages
from reliability.errors import reported_as_one_line
from tests.run_helpers import fresh_cli_environment
from tests.views.photos import write_photo_folder
from views.multicrop import AnySizeMultiCropBatchAugmenter

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch)


def recipe(name: str, data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    """The recipe's model and data settings under cpu-smoke's trainer, a tiny ResNet and 32 px views."""
    return [
        "fit",
        "--config", str(CONFIGS / name),
        "--config", str(CONFIGS / "cpu-smoke.yaml"),
        "--data.root", str(data_root),
        "--trainer.default_root_dir", str(run_dir),
        *extra,
    ]  # fmt: skip


def test_multicrop_recipe_trains_on_small_views_and_resumes(
    tiny_image_folder: Path, tmp_path: Path, lightning_logs: pytest.LogCaptureFixture
) -> None:

    first = cli_main(
        recipe(
            "imagefolder-multicrop.yaml", tiny_image_folder, tmp_path / "run", "--data.small_view_size", "16"
        )
    )
    datamodule = first.datamodule
    assert (datamodule.multi_crop.count, datamodule.multi_crop.size) == (4, 16)
    assert datamodule.multi_crop.crop_scale == (0.05, 0.14)
    assert "32 px + 4 small views of 16 px (crops of 0.05-0.14)" in lightning_logs.text
    assert first.trainer.global_step == 1 and torch.isfinite(first.trainer.callback_metrics["train/loss"])

    resumed = cli_main(
        [
            "fit",
            "--config",
            str(tmp_path / "run" / "config.yaml"),
            "--ckpt_path",
            "last",
            "--trainer.max_epochs",
            "2",
        ]
    )
    assert resumed.trainer.global_step == 2 and resumed.datamodule.multi_crop.size == 16


def test_multicrop_recipe_trains_on_a_photo_folder_of_any_size_on_the_batched_path(tmp_path: Path) -> None:
    """The path a photo folder takes on a GPU (files read per batch), run on the CPU by its workers."""
    sizes = [(40, 30), (25, 50), (64, 48), (33, 33), (70, 20), (45, 60), (50, 50), (36, 72)]
    photos = write_photo_folder(tmp_path / "photos", sizes)
    extra = ("--data.small_view_size", "16", "--data.view_path", "batched", "--data.batch_size", "8")
    run = cli_main(recipe("imagefolder-multicrop.yaml", photos, tmp_path / "run", *extra))
    assert isinstance(run.datamodule.train_dataset, EncodedImages)
    assert isinstance(run.datamodule.train_dataset.augmenter, AnySizeMultiCropBatchAugmenter)
    assert run.trainer.global_step == 2 and torch.isfinite(run.trainer.callback_metrics["train/loss"])


def test_small_views_larger_than_the_large_ones_are_one_error_line(
    tiny_image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit), reported_as_one_line():
        cli_main(recipe("imagefolder-multicrop.yaml", tiny_image_folder, tmp_path / "run"))
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert line.startswith("error: ") and "--data.small_view_size 96 is larger than the 32 px" in line


def test_a_vit_cannot_take_small_views_and_says_what_to_change(
    tiny_image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = recipe(
        "imagefolder-multicrop.yaml", tiny_image_folder, tmp_path / "run",
        "--data.small_view_size", "16", "--model.backbone", "vit_micro",
    )  # fmt: skip
    with pytest.raises(SystemExit), reported_as_one_line():
        cli_main(arguments)
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "cannot take 16 px images" in line and "--data.num_small_views 0" in line


def test_v2_recipe_builds_a_three_layer_head(tiny_image_folder: Path, tmp_path: Path) -> None:
    # Parsed and built without a subcommand (run=False): no training.
    parsed = cli_main(recipe("imagefolder-v2.yaml", tiny_image_folder, tmp_path / "run")[1:], run=False)
    hparams = parsed.model.hparams
    assert (hparams.projection_layers, hparams.weight_decay, hparams.temperature) == (3, 1e-4, 0.1)
    assert [type(m).__name__ for m in parsed.model.projection_head].count("Linear") == 3
