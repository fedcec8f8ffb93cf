"""evaluate.py given values or files that cannot work: one line, and no empty result folder left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.cli import main
from reliability.errors import reported_as_one_line
from tests.evaluation.conftest import PretrainedRun, data_flags


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info, reported_as_one_line():
        main(argv)
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    ("command", "flag", "value", "expected"),
    [
        ("knn", "--k", "0", "--k 0 is invalid: it must be >= 1"),
        ("knn", "--temperature", "0", "--temperature 0.0 is invalid: it must be > 0"),
        ("linear", "--epochs", "0", "--epochs 0 is invalid: it must be >= 1"),
        ("finetune", "--fractions", "[0.0]", "--fractions [0.0] is invalid: it must be in (0, 1]"),
    ],
)
def test_a_value_that_cannot_work_is_refused_before_any_work(
    pretrained_run: PretrainedRun, tmp_path: Path, capsys, command: str, flag: str, value: str, expected: str
) -> None:
    output = tmp_path / "out"
    argv = [command, "--ckpt", str(pretrained_run.checkpoint), flag, value, "--output_dir", str(output)]
    assert expected in one_error_line(capsys, argv)
    assert not output.exists()


def test_predict_top_k_below_one_is_one_line(pretrained_run: PretrainedRun, tmp_path: Path, capsys) -> None:
    image = next((pretrained_run.data_root / "test").rglob("*.png"))
    line = one_error_line(capsys, ["predict", "--ckpt", "classifier.pt", str(image), "--top_k", "-1"])
    assert "--top_k -1 is invalid: it must be >= 1" in line


def test_k_larger_than_the_feature_bank_warns(pretrained_run: PretrainedRun, tmp_path: Path) -> None:
    output = ["--output_dir", str(tmp_path / "o")]
    argv = ["knn", "--ckpt", str(pretrained_run.checkpoint), "--k", "1000", *output]
    with pytest.warns(UserWarning, match="--k 1000 is more than the 36 training images"):
        main(argv)


def test_knn_without_data_outside_a_run_folder_names_the_flags(
    pretrained_run: PretrainedRun, tmp_path: Path, capsys
) -> None:
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes(pretrained_run.checkpoint.read_bytes())
    line = one_error_line(capsys, ["knn", "--ckpt", str(loose)])
    assert "No data given" in line and "--config runs/RUN/config.yaml" in line
    assert "--data <DataModule>" in line


def test_a_bad_yaml_file_for_evaluate_names_the_file(pretrained_run: PretrainedRun, tmp_path: Path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    line = one_error_line(capsys, ["knn", "--ckpt", str(pretrained_run.checkpoint), "--config", str(broken)])
    assert f"Config file '{broken}' (--config) is not valid YAML" in line


def test_a_failed_evaluation_leaves_no_empty_result_folder(
    pretrained_run: PretrainedRun, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loose = tmp_path / "loose.ckpt"  # outside a run folder: results would go to runs/eval/knn-*
    loose.write_bytes(pretrained_run.checkpoint.read_bytes())
    flags = data_flags(tmp_path / "no_such_data")
    line = one_error_line(capsys, ["knn", "--ckpt", str(loose), *flags])
    assert "does not exist" in line
    assert not (tmp_path / "runs" / "eval").exists()


@pytest.mark.parametrize(
    ("device", "expected"),
    [("gpu", "--device 'gpu' is not a device"), ("cuda:99", "--device cuda:99 asks for GPU 99")],
)
def test_a_device_the_machine_lacks_is_one_line(
    pretrained_run: PretrainedRun, tmp_path: Path, capsys, device: str, expected: str
) -> None:
    output = tmp_path / "out"
    argv = ["knn", "--ckpt", str(pretrained_run.checkpoint), "--device", device, "--output_dir", str(output)]
    assert expected in one_error_line(capsys, argv)
    assert not output.exists()
