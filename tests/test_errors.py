"""Every user mistake the issue lists ends in one `error: ...` line naming the culprit and the fix."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import wandb

from cli import cli_main
from datamodules.imagefolder import ImageFolderDataModule
from lightning_modules.simclr import SimCLR
from reliability.errors import DEBUG_ENV
from tests.run_helpers import REPOSITORY, fresh_cli_environment, smoke_args, write_image_folder
from tests.views.test_decode import write_bomb_png
from views.decode import UnreadableImageError, load_rgb


@pytest.fixture(autouse=True)
def fresh_process_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and far faster on a busy CPU
    yield
    torch.set_num_threads(threads)
    # W&B keeps the settings of its first session (WANDB_MODE=disabled here) for the whole process;
    # ending it lets later tests' WANDB_MODE=offline take effect.
    wandb.teardown()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


def error_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Runs the CLI, expects exit status 1 and returns the single error line it printed."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, errors
    assert "Traceback" not in errors[0]
    return errors[0]


def test_dataset_root_that_does_not_exist(tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(tmp_path / "nowhere", tmp_path / "run"), capsys)
    assert f"'{tmp_path / 'nowhere'}' does not exist" in line and "Expected layout" in line


def test_root_without_class_folders(tmp_path: Path, capsys) -> None:
    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "val").mkdir()
    line = error_line(smoke_args(tmp_path / "flat", tmp_path / "run"), capsys)
    assert f"No class folders found in '{tmp_path / 'flat' / 'train'}'" in line


def test_empty_class_folder(images: Path, tmp_path: Path, capsys) -> None:
    (images / "train" / "c").mkdir()
    (images / "val" / "c").mkdir()
    line = error_line(smoke_args(images, tmp_path / "run"), capsys)
    assert "without images" in line and "['c']" in line


def test_unreadable_image_is_named(images: Path, tmp_path: Path, capsys) -> None:
    # A validation image: the sanity check reads it before any training step.
    broken = images / "val" / "a" / "0.png"
    broken.write_bytes(b"this is not an image")
    line = error_line(smoke_args(images, tmp_path / "run"), capsys)
    assert f"Image file '{broken}' cannot be read" in line and "Replace or delete it" in line


def test_a_decompression_bomb_is_named(images: Path, tmp_path: Path, capsys) -> None:
    bomb = write_bomb_png(images / "train" / "a" / "huge.png")  # a 20000 x 20000 PNG header
    line = error_line(smoke_args(images, tmp_path / "run"), capsys)
    assert f"Image file '{bomb}' is refused as a possible decompression bomb" in line
    assert "178,956,970 pixels" in line and "Downscale it" in line


def test_truncated_image_is_named(images: Path) -> None:
    truncated = images / "train" / "a" / "3.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(UnreadableImageError, match=f"Image file '{truncated}' cannot be read"):
        load_rgb(str(truncated))


def test_non_image_file_is_skipped_with_a_warning(images: Path) -> None:
    (images / "train" / "a" / "notes.txt").write_text("not an image")
    datamodule = ImageFolderDataModule(str(images), batch_size=4, num_workers=0, image_size=16)
    with pytest.warns(UserWarning, match=r"Skipped 1 file\(s\) .*: 1 without an image extension .*notes.txt"):
        datamodule.setup("fit")
    assert len(datamodule.train_dataset) == 16


@pytest.mark.parametrize(
    ("batch_size", "expected"),
    [("1", "batch_size=1 is too small"), ("64", "has 16 images, fewer than batch_size=64")],
)
def test_batch_size_too_small_or_larger_than_the_dataset(
    images: Path, tmp_path: Path, capsys, batch_size: str, expected: str
) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--data.batch_size", batch_size), capsys)
    assert expected in line


def test_batch_size_not_divisible_by_the_devices(images: Path, tmp_path: Path, capsys) -> None:
    devices = ("--trainer.devices", "3", "--trainer.strategy", "ddp")
    line = error_line(smoke_args(images, tmp_path / "run", *devices, "--data.batch_size", "4"), capsys)
    assert "--data.batch_size 4" in line and "not divisible by the 3 devices" in line
    assert "e.g. 3 or 6" in line


def test_val_holdout_1_0_is_ambiguous_and_1_is_a_count(images: Path, tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--data.val_holdout", "1.0"), capsys)
    assert "--data.val_holdout=1.0 is ambiguous" in line and "e.g. 1 or 5000" in line and "0.1" in line
    parsed = cli_main(smoke_args(images, tmp_path / "run2", "--data.val_holdout", "1")[1:], run=False)
    assert parsed.datamodule.val_holdout == 1 and isinstance(parsed.datamodule.val_holdout, int)


@pytest.mark.parametrize("temperature", ["0", "-0.5"])
def test_temperature_not_positive(images: Path, tmp_path: Path, capsys, temperature: str) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--model.temperature", temperature), capsys)
    assert "--model.temperature must be > 0" in line


def test_unknown_backbone(images: Path, tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--model.backbone", "resnet19"), capsys)
    assert "Unknown backbone 'resnet19'" in line and "Did you mean" in line


def test_checkpoint_of_another_architecture(images: Path, tmp_path: Path, capsys) -> None:
    other = SimCLR(backbone="tiny_resnet", image_size=16, projection_dim=64, batch_size=4)
    checkpoint = tmp_path / "other.ckpt"
    torch.save(
        {"state_dict": other.state_dict(), "hyper_parameters": dict(other.hparams),
         "pytorch-lightning_version": pl.__version__},
        checkpoint,
    )
    args = smoke_args(images, tmp_path / "run", "--ckpt_path", str(checkpoint))
    line = error_line(["validate", *args[1:]], capsys)
    assert f"Checkpoint '{checkpoint}' does not fit this model" in line
    assert "projection_dim 64 (this run: 128)" in line


def test_more_gpus_than_the_machine_has(images: Path, tmp_path: Path, capsys) -> None:
    too_many = torch.cuda.device_count() + 1
    gpus = ("--trainer.accelerator", "gpu", "--trainer.devices", str(too_many))
    line = error_line(smoke_args(images, tmp_path / "run", *gpus), capsys)
    assert f"--trainer.devices {too_many} asks for {too_many} GPUs" in line


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(images: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    # Plain SGD at an absurd learning rate: the weights overflow within a few steps.
    args = smoke_args(
        images, run, "--model.optimizer", "sgd", "--model.base_lr", "1e30", "--model.warmup_epochs", "0",
        "--step_checkpoint.every_n_train_steps", "1",
    )
    line = error_line(args, capsys)
    assert "The training loss became" in line and "training stopped" in line
    assert "--trainer.precision 32-true" not in line  # the run already trains in 32-bit
    failed_step = int(line.split(" at step ")[1].split()[0])
    last = run / "checkpoints" / "last.ckpt"
    assert f"The last good checkpoint is kept: {last}" in line
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == failed_step - 1
    weights = [value for value in saved["state_dict"].values() if value.is_floating_point()]
    assert all(torch.isfinite(value).all() for value in weights)


def test_output_folder_that_already_holds_a_run(images: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed_everything: 0\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    line = error_line(smoke_args(images, run), capsys)
    assert f"'{run}' already holds a run" in line
    assert f"--config {run / 'config.yaml'} --ckpt_path last" in line
    assert (run / "config.yaml").read_text() == "seed_everything: 0\n"
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"weights"


def test_a_folder_whose_run_saved_no_checkpoint_takes_a_new_run(images: Path, tmp_path: Path) -> None:
    """Killed before its first checkpoint, or stopped by bad data: nothing to resume, so no dead end."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed_everything: 0\n")
    (run / "notes.txt").write_text("mine")
    with pytest.warns(UserWarning, match="saved no checkpoint; starting a new run there"):
        cli_main(smoke_args(images, run, "--trainer.max_epochs", "1"))
    kept = list(run.glob("config-unfinished-*.yaml"))
    assert len(kept) == 1 and kept[0].read_text() == "seed_everything: 0\n"
    assert (run / "notes.txt").read_text() == "mine"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_resume_with_nothing_to_resume(images: Path, tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--ckpt_path", "last"), capsys)
    assert "no last.ckpt in" in line and "nothing to resume" in line


def test_debug_env_keeps_the_traceback(images: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="Unknown backbone"):
        cli_main(smoke_args(images, tmp_path / "run", "--model.backbone", "resnet19"))


def test_a_config_typo_is_one_line_with_exit_status_1(images: Path, tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", "--model.tempreature", "0.1"), capsys)
    assert "unrecognized arguments: --model.tempreature 0.1" in line.lower()  # 4.40 says "Unrecognized"
    assert "usage:" not in capsys.readouterr().err


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  backbone: resnet18\ntrainer: max_epochs: 3\n")
    line = error_line(["fit", "--config", str(broken)], capsys)
    assert f"Config file '{broken}' (--config) is not valid YAML" in line and "line 3, column 20" in line


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--data.batch_size", "0", "batch_size=0 is too small"),
        ("--data.image_size", "0", "image_size=0 must be a positive number of pixels"),
        ("--data.num_workers", "-1", "num_workers=-1 must be >= 0"),
        ("--trainer.max_epochs", "x", "--trainer.max_epochs: expected int, got 'x'"),
    ],
)
def test_an_invalid_value_is_the_sentence_that_explains_it(
    images: Path, tmp_path: Path, capsys, flag: str, value: str, expected: str
) -> None:
    line = error_line(smoke_args(images, tmp_path / "run", flag, value), capsys)
    assert expected in line and "Union" not in line and len(line) < 250, line


def test_no_datamodule_chosen_says_which_flag(tmp_path: Path, capsys) -> None:
    # configs/cpu-smoke.yaml sets data.init_args only; it is meant to go after a dataset's config.
    line = error_line(["fit", "--config", str(REPOSITORY / "configs" / "cpu-smoke.yaml")], capsys)
    assert "No SimCLRDataModule is chosen for 'data'; pass --data <ClassName>" in line


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_last_checkpoint(
    images: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    saves = {"count": 0}
    real_save = torch.save

    def disk_fills_at_the_third_save(checkpoint, file) -> None:
        saves["count"] += 1
        if saves["count"] == 3:
            file.write(b"PK\x03\x04 the start of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device", str(run / "checkpoints"))
        real_save(checkpoint, file)

    monkeypatch.setattr("reliability.checkpoint_io.torch.save", disk_fills_at_the_third_save)
    line = error_line(smoke_args(images, run, "--step_checkpoint.every_n_train_steps", "1"), capsys)
    assert f"Cannot write '{run / 'checkpoints'}': No space left on device. Free space" in line
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]


def test_a_folder_that_cannot_be_written_is_one_line(images: Path, tmp_path: Path, capsys, monkeypatch):
    """Tests run as root, which may write anywhere; the refusal is simulated where the run folder is made."""
    run = tmp_path / "read-only" / "run"

    def refuse(self, *args, **kwargs) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    line = error_line(smoke_args(images, run), capsys)
    assert f"Cannot write '{run}': Permission denied." in line and "--trainer.default_root_dir" in line


def test_a_second_run_in_a_busy_folder_stops_at_once(images: Path, tmp_path: Path, capsys) -> None:
    """Another process (here: a child holding the folder's lock) is running in the folder."""
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    hold = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.lockf(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(run / ".run.lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = error_line(smoke_args(images, run), capsys)
    finally:
        holder.kill()
        holder.wait()
    assert f"Another process is running in '{run}'" in line
    assert sorted(p.name for p in run.iterdir()) == [".run.lock"]


def test_a_run_that_fails_before_writing_anything_leaves_no_folder(tmp_path: Path, capsys) -> None:
    line = error_line(smoke_args(tmp_path / "no_such_data", tmp_path / "run"), capsys)
    assert "does not exist" in line
    assert not (tmp_path / "run").exists()
    error_line(["fit", "--config", str(REPOSITORY / "configs" / "imagefolder.yaml"),
                "--data.root", str(tmp_path / "no_such_data")], capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_backbone_that_cannot_take_the_image_size_is_one_line(images: Path, tmp_path: Path, capsys) -> None:
    # AlexNet's pooling shrinks a 32 px image to nothing; it fails at the first forward, deep in torch.
    args = smoke_args(images, tmp_path / "run", "--model.backbone", "alexnet", "--data.image_size", "32")
    line = error_line(args, capsys)
    assert "Backbone 'alexnet' cannot take 32 px images" in line and "--data.image_size" in line


def test_a_run_folder_that_is_a_file_is_one_line(images: Path, tmp_path: Path, capsys) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("mine")
    line = error_line(smoke_args(images, taken), capsys)
    assert f"--trainer.default_root_dir '{taken}' is a file" in line and taken.read_text() == "mine"
