"""Bad files given as checkpoints: one line naming the file and flag, and a crafted pickle runs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cli import cli_main
from evaluation.cli import main as evaluate_main
from reliability.checkpoint_io import AtomicCheckpointIO
from reliability.errors import reported_as_one_line
from tests.run_helpers import fresh_cli_environment, smoke_args, write_image_folder


class CreatesMarkerWhenUnpickled:
    """What a crafted checkpoint does: unpickling it calls open(marker, "w")."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(autouse=True)
def fresh_process_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    fresh_cli_environment(monkeypatch)
    yield


def bad_files(folder: Path) -> dict[str, Path]:
    """A file of every kind a user might pass by mistake, keyed by what it is."""
    folder.mkdir()
    real = folder / "real.pt"
    torch.save({"state_dict": {"w": torch.ones(64)}, "pytorch-lightning_version": "2.6"}, real)
    files = {
        "truncated": folder / "truncated.ckpt",
        "zero-byte": folder / "empty.ckpt",
        "text": folder / "notes.ckpt",
        "directory": folder / "a_folder.ckpt",
        "torchvision state_dict": folder / "resnet18.pth",
        "classifier.pt": folder / "classifier.pt",
    }
    files["truncated"].write_bytes(real.read_bytes()[:200])
    files["zero-byte"].write_bytes(b"")
    files["text"].write_text("epoch: 3\nthis is not a checkpoint\n")
    files["directory"].mkdir()
    torch.save({"conv1.weight": torch.ones(2, 3), "fc.bias": torch.zeros(2)}, files["torchvision state_dict"])
    classifier = {"meta": {"protocol": "linear"}, "state_dict": {"head.bias": torch.zeros(2)}}
    torch.save(classifier, files["classifier.pt"])
    return files


EXPECTED = {
    "truncated": "is not a readable PyTorch checkpoint",
    "zero-byte": "is empty (0 bytes)",
    "text": "is not a readable PyTorch checkpoint",
    "directory": "is a folder, not a checkpoint file",
    "torchvision state_dict": "is not a SimCLR checkpoint written by train.py (it is a plain state_dict",
    "classifier.pt": "is not a SimCLR checkpoint written by train.py (it is a classifier.pt",
}


def one_error_line(capsys: pytest.CaptureFixture[str], run) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info, reported_as_one_line():
        run()
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    return errors[0]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_bad_checkpoint_file_for_fit_knn_and_export_is_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_files(tmp_path / "files")[kind]
    images = write_image_folder(tmp_path / "images")
    fit = smoke_args(images, tmp_path / "run", "--ckpt_path", str(path))
    knn = ["knn", "--ckpt", str(path), "--data", "ImageFolderDataModule", "--data.root", str(images),
           "--data.batch_size", "4", "--data.num_workers", "0", "--data.image_size", "16"]
    for run, flag in ((lambda: cli_main(fit), "--ckpt_path"), (lambda: evaluate_main(knn), "--ckpt"),
                      (lambda: evaluate_main(["export", "--ckpt", str(path)]), "--ckpt")):
        line = one_error_line(capsys, run)
        assert f"'{path}' ({flag})" in line and EXPECTED[kind] in line, line
    # Nothing was created for the failed commands: no run folder, no evaluation folder.
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["truncated", "zero-byte", "text", "directory", "torchvision state_dict"])
def test_a_bad_classifier_file_for_predict_is_one_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_files(tmp_path / "files")[kind]
    image = write_image_folder(tmp_path / "images") / "val" / "a" / "0.png"
    line = one_error_line(capsys, lambda: evaluate_main(["predict", "--ckpt", str(path), str(image)]))
    assert f"'{path}' (--ckpt)" in line


def test_a_crafted_pickle_runs_nothing_anywhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "code_ran"
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": CreatesMarkerWhenUnpickled(marker)}, crafted)
    assert not marker.exists()
    images = write_image_folder(tmp_path / "images")
    image = images / "val" / "a" / "0.png"
    commands = [
        lambda: evaluate_main(["predict", "--ckpt", str(crafted), str(image)]),
        lambda: evaluate_main(["export", "--ckpt", str(crafted)]),
        lambda: cli_main(smoke_args(images, tmp_path / "run", "--ckpt_path", str(crafted))),
    ]
    for run in commands:
        line = one_error_line(capsys, run)
        assert f"'{crafted}'" in line and "can run arbitrary code" in line
        assert not marker.exists()
    with pytest.raises(Exception, match="Weights only load failed"):
        AtomicCheckpointIO().load_checkpoint(crafted)
    assert not marker.exists()


def test_a_classifier_written_by_linear_evaluation_loads_weights_only(tmp_path: Path) -> None:
    """classifier.pt holds only tensors and plain values, so safe loading reads it back exactly."""
    from evaluation.models import ClassifierMeta, EncoderClassifier, EncoderSpec, save_classifier
    from evaluation.predict import load_classifier

    spec = EncoderSpec("tiny_resnet", 16, True, 128)
    model = EncoderClassifier(spec.build(), spec.feature_dim, 2)
    meta = ClassifierMeta(spec, ["a", "b"], 16, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), 16, "linear", {"seed": 1})
    save_classifier(model, meta, tmp_path / "classifier.pt")
    torch.load(tmp_path / "classifier.pt", weights_only=True)  # raises if anything but plain types
    loaded, loaded_meta = load_classifier(tmp_path / "classifier.pt")
    assert loaded_meta == meta
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor)
