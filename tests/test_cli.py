import os
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import wandb
import yaml

import cli
from cli import cli_main
from lightning_modules.simclr import SimCLR
from tests.run_helpers import fresh_cli_environment, write_image_folder
from tests.views.photos import photo_pixels, save_jpeg, write_photo_folder

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMOKE = ["--config", str(CONFIGS / "imagefolder.yaml"), "--config", str(CONFIGS / "cpu-smoke.yaml")]


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # runs/ is relative to the working directory; W&B stays offline and local.
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch, wandb_mode="offline")


def only_run_folder() -> Path:
    (run_dir,) = Path("runs").iterdir()
    return run_dir


def test_fit_then_validate_from_the_saved_checkpoint(tiny_image_folder: Path) -> None:
    fit = cli_main(["fit", *SMOKE, "--data.root", str(tiny_image_folder)])
    run_dir = only_run_folder()
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert fit.trainer.global_step == 1  # 48 images, batch 32, drop_last: one batch per epoch

    # The datamodule is the single source of image size, global batch and number of classes.
    model, probe = fit.model, fit.trainer.callbacks
    assert model.hparams.image_size == 32 and model.hparams.batch_size == 32
    (online_probe,) = [c for c in probe if type(c).__name__ == "OnlineLinearProbe"]
    assert online_probe.classifier.out_features == 4

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["init_args"]["root"] == str(tiny_image_folder)
    assert saved["trainer"]["default_root_dir"] == str(run_dir)

    fitted_top1 = fit.trainer.callback_metrics["val/probe_top1"]
    last = run_dir / "checkpoints" / "last.ckpt"
    validate = cli_main(["validate", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(last)])
    # Same weights, same probe, same validation images: the same accuracy, and a folder of its own.
    torch.testing.assert_close(validate.trainer.callback_metrics["val/probe_top1"], fitted_top1)
    (validate_dir,) = run_dir.glob("validate-*")
    assert (validate_dir / "config.yaml").is_file()
    assert len(list((run_dir / "checkpoints").glob("*.ckpt"))) == 2  # untouched: last + best


def test_a_folder_holding_a_run_is_not_reused_without_resuming(tiny_image_folder: Path, capsys) -> None:
    arguments = [*SMOKE, "--data.root", str(tiny_image_folder), "--trainer.logger", "false"]
    cli_main(["fit", *arguments, "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"])
    run_dir = only_run_folder()
    before = (run_dir / "config.yaml").read_text()
    capsys.readouterr()
    # A user error: one line and exit status 1 (tests/test_errors.py covers the others).
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", *arguments, "--trainer.default_root_dir", str(run_dir)])
    assert exit_info.value.code == 1
    assert re.search("^error: .*already holds a run.*--ckpt_path", capsys.readouterr().err, re.M)
    assert (run_dir / "config.yaml").read_text() == before


def test_each_fit_gets_a_fresh_folder(tiny_image_folder: Path) -> None:
    arguments = [*SMOKE, "--data.root", str(tiny_image_folder), "--trainer.logger", "false"]
    arguments += ["--trainer.limit_val_batches", "0", "--test_after_fit", "false"]
    for _ in range(2):
        cli_main(["fit", *arguments])
    assert len(list(Path("runs").iterdir())) == 2


def test_fast_dev_run_writes_nothing_so_the_real_run_can_follow_it(tiny_image_folder: Path) -> None:
    """Lightning's fast_dev_run is a dry run (no logger, no checkpoint, no config.yaml): the folder it
    names is the one the real run will use, so it must leave that folder as it found it."""
    arguments = [*SMOKE, "--data.root", str(tiny_image_folder), "--trainer.default_root_dir", "exp"]
    cli_main(["fit", *arguments, "--trainer.fast_dev_run", "true"])
    assert not Path("exp").exists()
    # W&B off: its service process may still append to its logs after the run.
    real_run = ["--trainer.limit_val_batches", "0", "--test_after_fit", "false", "--trainer.logger", "false"]
    cli_main(["fit", *arguments, *real_run])
    assert (Path("exp") / "config.yaml").is_file() and (Path("exp") / "checkpoints" / "last.ckpt").is_file()
    before = {path: path.read_bytes() for path in Path("exp").rglob("*") if path.is_file()}
    cli_main(["fit", *arguments, "--trainer.fast_dev_run", "true"])  # neither refused nor writing
    assert {path: path.read_bytes() for path in Path("exp").rglob("*") if path.is_file()} == before


def test_wandb_goes_offline_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "missing-netrc"))
    cli.choose_wandb_mode()
    assert os.environ["WANDB_MODE"] == "offline"

    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr("reliability.wandb_mode.wandb_reachable", lambda: True)
    cli.choose_wandb_mode()
    assert "WANDB_MODE" not in os.environ


def test_an_explicit_wandb_mode_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli.choose_wandb_mode()
    assert os.environ["WANDB_MODE"] == "disabled"


def test_progress_bar_can_be_switched_off(tiny_image_folder: Path) -> None:
    arguments = [*SMOKE, "--data.root", str(tiny_image_folder), "--trainer.logger", "false"]
    arguments += ["--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"]
    fit = cli_main(["fit", *arguments])
    assert fit.trainer.progress_bar_callback is None


def test_a_run_that_fails_mid_training_closes_its_wandb_run(tiny_image_folder: Path) -> None:
    # SGD at an absurd learning rate: the loss turns non-finite after the W&B run has started.
    diverging = ["--model.optimizer", "sgd", "--model.base_lr", "1e30", "--model.warmup_epochs", "0"]
    diverging += ["--trainer.max_epochs", "3"]
    with pytest.raises(SystemExit):
        cli_main(["fit", *SMOKE, "--data.root", str(tiny_image_folder), *diverging])
    assert wandb.run is None


@pytest.mark.parametrize(
    ("flags", "made"),
    [
        ([], False),  # the default probe trains on the training views: no probe view is made
        (["--probe.features", "probe_view"], True),  # one flag: the datamodule makes what the probe reads
        (["--data.probe_view", "true"], True),  # asked for directly, for other readers of the view
    ],
)
def test_the_probe_view_is_made_only_when_something_reads_it(
    tiny_image_folder: Path, flags: list[str], made: bool
) -> None:
    parsed = cli_main([*SMOKE, "--data.root", str(tiny_image_folder), *flags], run=False)
    assert parsed.datamodule.probe_view is made


def test_cifar_recipe_on_a_folder_of_32px_images_trains_at_32px_and_tests_once(tmp_path: Path) -> None:
    """The README's one-flag swap on a train/test folder: native size, CIFAR stem, held-out validation,
    estimated statistics saved in config.yaml, and one test pass with the final weights after fit."""
    classes = ("a", "b", "c", "d")
    root = write_image_folder(tmp_path / "cifar_like", classes, 12, val_per_class=4, image_side=32)
    (root / "val").rename(root / "test")
    fit = cli_main([
        "fit", "--config", str(CONFIGS / "cifar10.yaml"), "--data", "ImageFolderDataModule",
        "--data.root", str(root), "--data.batch_size", "16", "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.max_epochs", "1",
        "--trainer.logger", "false", "--knn_monitor.bank_size", "64",
    ])  # fmt: skip
    model, datamodule = fit.model, fit.datamodule
    assert model.hparams.image_size == 32 and model.hparams.backbone == "resnet18"
    assert model.encoder.conv1.kernel_size == (3, 3) and isinstance(model.encoder.maxpool, torch.nn.Identity)
    assert datamodule.hparams.jitter_strength == 0.5 and datamodule.hparams.blur is False  # the recipe's
    assert len(datamodule.val_dataset) == 5  # 10% of the 48 training images
    saved = yaml.safe_load((only_run_folder() / "config.yaml").read_text())["data"]["init_args"]
    assert saved["image_size"] == 32 and saved["mean"] == list(datamodule.mean) and len(saved["std"]) == 3
    assert saved["val_holdout"] == 0.1  # the default in effect, pinned for reruns of this config
    metrics = fit.trainer.callback_metrics
    assert {"val/probe_top1", "val/knn_top1", "test/probe_top1", "test/knn_top1"} <= metrics.keys()


def test_a_checkpoint_whose_stem_does_not_fit_is_refused_in_one_line(
    tiny_image_folder: Path, tmp_path: Path, capsys
) -> None:
    """Same settings except the image size, which the datamodule links in after parsing: a 96 px
    checkpoint has the 7x7 ImageNet stem, a 32 px run the 3x3 CIFAR stem. Checked in before_validate."""
    other = SimCLR(backbone="resnet18", image_size=96, batch_size=4)
    checkpoint = tmp_path / "imagenet-stem.ckpt"
    saved = {"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams)}
    torch.save({**saved, "pytorch-lightning_version": pl.__version__}, checkpoint)
    arguments = [*SMOKE, "--data.root", str(tiny_image_folder), "--model.backbone", "resnet18"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["validate", *arguments, "--trainer.logger", "false", "--ckpt_path", str(checkpoint)])
    assert exit_info.value.code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert f"Checkpoint '{checkpoint}' does not fit this model" in line
    assert "image_size 96 (this run: 32)" in line


def test_a_folder_of_jpegs_of_any_size_trains_on_batched_views_and_evaluates(
    tmp_path: Path, lightning_logs: pytest.LogCaptureFixture
) -> None:
    """`--data.view_path batched` on photos of varied sizes, EXIF-rotated ones among them: the run says
    which path it takes and why, and validation, the kNN monitor and the final test, whose views come
    from the evaluation transforms, work on the same varied images."""
    sizes = [(40 + 9 * (n % 4), 56 - 7 * (n % 3)) for n in range(12)]
    root = write_photo_folder(tmp_path / "photos", sizes, classes=("a", "b", "c", "d"), png_every=5)
    save_jpeg(root / "train" / "a" / "rotated.jpg", photo_pixels(64, 40), orientation=6)
    fit = cli_main([
        "fit", *SMOKE, "--data.root", str(root), "--data.image_size", "32", "--data.view_path", "batched",
        "--trainer.logger", "false",
    ])  # fmt: skip
    assert "Training views: batched (training images differ in size" in lightning_logs.text
    assert "files read per batch, decoded and views made in the DataLoader workers" in lightning_logs.text
    assert len(fit.datamodule.train_dataset) == 49 and fit.trainer.global_step == 1  # one batch of 32
    metrics = fit.trainer.callback_metrics
    assert {"val/probe_top1", "val/knn_top1", "test/probe_top1", "test/knn_top1"} <= metrics.keys()
