"""`--help` of both entry points says what the template does; every option carries a help text."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cli import SimCLRCLI, cli_main
from evaluation.cli import build_parser
from help_text import EVALUATE_COMMANDS, EVALUATE_DESCRIPTION, TRAIN_DESCRIPTION, TRAIN_SUBCOMMANDS
from tests.run_helpers import REPOSITORY


def options_without_help(help_text: str) -> list[str]:
    """Options whose entry in an argparse help text is only `(type: ..., default: ...)` or nothing."""
    entries: list[tuple[str, str]] = []
    for line in help_text.splitlines():
        option = re.match(r"^  (?:-\w, )?(--[\w.]+)(?: [A-Z_{}\[\],.| =a-z]*?)?(?:\s{2,}(.*))?$", line)
        if option:
            entries.append((option.group(1), option.group(2) or ""))
        elif entries and line.startswith(" " * 8):
            name, text = entries[-1]
            entries[-1] = (name, f"{text} {line.strip()}")
    return [name for name, text in entries if not text.strip() or text.strip().startswith("(")]


def entry_point_help(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPOSITORY / script), "--help"], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_the_help_checker_finds_an_option_without_help() -> None:
    text = "options:\n  --epochs EPOCHS       (type: int, default: 100)\n  --lr LR               AdamW rate."
    assert options_without_help(text) == ["--epochs"]


def test_train_help_opens_with_the_template_and_its_three_commands() -> None:
    text = entry_point_help("train.py")
    assert TRAIN_DESCRIPTION in text
    assert text.count("python train.py fit") >= 2 and "python evaluate.py linear" in text


def test_evaluate_help_describes_each_command() -> None:
    text = entry_point_help("evaluate.py")
    assert EVALUATE_DESCRIPTION in text
    for command, description in EVALUATE_COMMANDS.items():
        assert f"  {command}" in text and description in text


def test_the_overviews_list_the_commands_the_parsers_have() -> None:
    assert list(TRAIN_SUBCOMMANDS) == list(SimCLRCLI.subcommands()) == ["fit", "validate", "test"]
    parser = build_parser()
    (subcommands,) = [action for action in parser._actions if action.dest == "command"]
    assert list(EVALUATE_COMMANDS) == list(subcommands.choices)


def test_fit_help_carries_the_description_and_every_option_has_help(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--help"])
    text = capsys.readouterr().out
    assert TRAIN_DESCRIPTION in text
    assert options_without_help(text) == []
    # No datamodule chosen: the options every datamodule shares, and how to see one's own.
    assert "--data.* options every datamodule shares" in text and "ImageFolderDataModule" in text
    assert "\n  --data.batch_size BATCH_SIZE\n                        the GLOBAL batch" in text


def test_fit_help_lists_the_options_of_the_datamodule_a_config_chooses(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(REPOSITORY / "configs" / "imagefolder.yaml"), "--help"])
    text = capsys.readouterr().out
    data_options = text[text.index("--data.* options of ImageFolderDataModule") :]
    assert options_without_help(text) == []
    assert "--data.root ROOT      the folder holding train/<class>/" in data_options  # its own text
    assert "--data.mean MEAN" in data_options and "--data.download" not in data_options  # its own options
    inherited = "--data.val_holdout VAL_HOLDOUT\n                        held-out"
    assert inherited in data_options  # SimCLRDataModule's text


def test_evaluate_data_commands_list_the_chosen_datamodules_options(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["knn", "--data", "CIFAR10DataModule", "--help"])
    text = capsys.readouterr().out
    assert "--data.* options of CIFAR10DataModule" in text and "--data.download {true,false}" in text
    assert options_without_help(text) == []


def test_train_predict_says_where_prediction_is(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["predict", "--config", str(REPOSITORY / "configs" / "cifar10.yaml")])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: train.py has no predict command") and "evaluate.py predict" in line


@pytest.mark.parametrize("command", list(EVALUATE_COMMANDS))
def test_every_evaluate_option_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert options_without_help(capsys.readouterr().out) == []
