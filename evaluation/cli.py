"""`python evaluate.py {linear,knn,finetune,predict,export} --ckpt PATH ...`: the evaluation commands.

The data commands take the same datamodule flags and config files as train.py (`--data ...`,
`--config configs/x.yaml`, `--config runs/RUN/config.yaml`); only a config's `data` section is used,
so a run's saved config.yaml selects the data it was trained on. Without any data flag, the
config.yaml of the run the checkpoint belongs to is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from data_help import add_help_with_data_options
from datamodules.base import SimCLRDataModule
from evaluation.commands import (
    EvaluationInputs,
    resolve_device,
    run_export,
    run_finetune,
    run_knn,
    run_linear,
    run_predict,
)
from evaluation.finetune import FinetuneSettings
from evaluation.results import RUN_CONFIG_FILENAME, fresh_output_dir, removed_if_left_empty, run_folder_of
from help_text import EVALUATE_COMMANDS, EVALUATE_DESCRIPTION
from reliability.checkpoint_files import read_simclr_checkpoint
from reliability.config_files import read_config_file

DATA_COMMANDS = ("linear", "knn", "finetune")
CONFIG_FLAG = "--config"
DEVICE_HELP = "auto (cuda when available), cpu or cuda:N."


def _common_arguments(parser: ArgumentParser, data: bool, ckpt_help: str) -> None:
    parser.add_argument("--ckpt", type=str, required=True, help=ckpt_help)
    parser.add_argument(
        "--output_dir",
        type=str | None,
        default=None,
        help="A new folder for the results (default: <run>/eval/<command>-<timestamp>).",
    )
    parser.add_argument("--device", type=str, default="auto", help=DEVICE_HELP)
    if data:
        parser.add_argument(
            CONFIG_FLAG,
            action=ActionConfigFile,
            help="train.py config file(s); only their data section is read.",
        )
        parser.add_subclass_arguments(SimCLRDataModule, "data", required=True)
        parser.add_argument(
            "--random_init",
            type=bool,
            default=False,
            help="Evaluate the checkpoint's architecture with fresh random weights (baseline).",
        )


def _subcommand_parser(description: str, data: bool = False) -> ArgumentParser:
    # Errors raise (printed as one `error:` line by evaluate.py) instead of printing usage and exiting 2.
    parser = ArgumentParser(description=description, exit_on_error=False, add_help=not data)
    if data:  # --help also lists the --data.* options of the chosen datamodule
        add_help_with_data_options(parser)
    return parser


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="evaluate.py", description=EVALUATE_DESCRIPTION, exit_on_error=False)
    commands = parser.add_subcommands(dest="command")
    simclr_ckpt = "SimCLR checkpoint written by train.py (runs/RUN/checkpoints/*.ckpt)."

    linear = _subcommand_parser("Linear evaluation on frozen features (top-1, top-5).", data=True)
    _common_arguments(linear, data=True, ckpt_help=simclr_ckpt)
    linear.add_argument("--epochs", type=int, default=100, help="Passes over the precomputed features.")
    linear.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the classifier.")
    linear.add_argument("--weight_decay", type=float, default=0.0, help="AdamW weight decay.")
    linear.add_argument(
        "--batch_size", type=int, default=256, help="Classifier batch (features are precomputed)."
    )
    linear.add_argument(
        "--augment_copies",
        type=int,
        default=0,
        help="Extra crop + flip copies of the train split to add (0: evaluation view only).",
    )
    linear.add_argument(
        "--seed", type=int, default=0, help="Seed of the classifier's initialisation and batch order."
    )
    linear.add_argument("--embedding_plot", type=bool, default=True, help="t-SNE map of the test features.")
    commands.add_subcommand("linear", linear, help=EVALUATE_COMMANDS["linear"])

    knn = _subcommand_parser("Weighted kNN classification (Wu et al., 2018), top-1.", data=True)
    _common_arguments(knn, data=True, ckpt_help=simclr_ckpt)
    knn.add_argument("--k", type=int, default=200, help="Neighbours that vote.")
    knn.add_argument(
        "--temperature", type=float, default=0.1, help="Votes are weighted exp(similarity / temperature)."
    )
    commands.add_subcommand("knn", knn, help=EVALUATE_COMMANDS["knn"])

    finetune = _subcommand_parser("Fine-tune the whole network on 1%, 10% and all of the labels.", data=True)
    _common_arguments(finetune, data=True, ckpt_help=simclr_ckpt)
    finetune.add_argument(
        "--fractions",
        type=list[float],
        default=[0.01, 0.1, 1.0],
        help="Label fractions, each a class-balanced seeded subset of the train split.",
    )
    finetune.add_argument(
        "--from_head_layer",
        type=int,
        default=0,
        help="Fine-tune the encoder and the first K layers of the projection head (SimCLR v2: 1 of "
        "a 3-layer head for 1 and 10 percent of the labels); 0: the encoder alone (SimCLR v1).",
    )
    finetune.add_class_arguments(FinetuneSettings, "finetune")
    commands.add_subcommand("finetune", finetune, help=EVALUATE_COMMANDS["finetune"])

    predict = _subcommand_parser("Classify image files or folders with a saved classifier.")
    predict.add_argument(
        "--ckpt",
        type=str,
        required=True,
        help="classifier.pt written by `evaluate.py linear` or `evaluate.py finetune`.",
    )
    predict.add_argument("images", type=str, nargs="+", help="Image files and/or folders of images.")
    predict.add_argument("--top_k", type=int, default=1, help="Classes printed per image, most likely first.")
    predict.add_argument("--device", type=str, default="auto", help=DEVICE_HELP)
    predict.add_argument(
        "--output_dir",
        type=str | None,
        default=None,
        help="Also write predictions.json into this new folder.",
    )
    commands.add_subcommand("predict", predict, help=EVALUATE_COMMANDS["predict"])

    export = _subcommand_parser("Export the encoder as a torchvision state_dict (encoder.pt).")
    _common_arguments(export, data=False, ckpt_help=simclr_ckpt)
    commands.add_subcommand("export", export, help=EVALUATE_COMMANDS["export"])
    return parser


def _only_data_sections(argv: list[str]) -> list[str]:
    """Each --config file reduced to its data section, so train.py configs (trainer, model, probe, ...)
    parse here; jsonargparse merges successive data sections exactly as train.py does."""
    rewritten, index = [], 0
    while index < len(argv):
        argument = argv[index]
        if argument == CONFIG_FLAG or argument.startswith(CONFIG_FLAG + "="):
            if argument == CONFIG_FLAG:
                index += 1
                path = argv[index] if index < len(argv) else ""
            else:
                path = argument.split("=", 1)[1]
            rewritten += [CONFIG_FLAG, _data_section(Path(path))]
        else:
            rewritten.append(argument)
        index += 1
    return rewritten


def _data_section(path: Path) -> str:
    content = read_config_file(path)
    return json.dumps({"data": content["data"]} if "data" in content else {})


def _with_run_config(argv: list[str]) -> list[str]:
    """Adds --config <run>/config.yaml when no data is named and the checkpoint lies in a run folder."""
    if len(argv) < 1 or argv[0] not in DATA_COMMANDS:
        return argv
    if any(arg.startswith((CONFIG_FLAG, "--data")) for arg in argv):
        return argv
    checkpoint = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--ckpt"), None)
    run_folder = run_folder_of(Path(checkpoint)) if checkpoint else None
    if run_folder is None:
        if checkpoint is None:
            return argv  # the parser reports the missing --ckpt
        raise ValueError(
            f"No data given, and '{checkpoint}' (--ckpt) is not inside a run folder whose config.yaml would "
            f"name it. Pass {CONFIG_FLAG} runs/RUN/config.yaml (or configs/<dataset>.yaml), or --data "
            "<DataModule> --data.root PATH."
        )
    return [argv[0], CONFIG_FLAG, str(run_folder / RUN_CONFIG_FILENAME), *argv[1:]]


# (flag, attribute path, test, what it must be) per command: values that would run but mean nothing
# (k=0 gives chance accuracy and exit 0) or fail deep inside with a traceback (top_k=-1).
OPTION_RULES: dict[str, list[tuple[str, str, Callable[[Any], bool], str]]] = {
    "linear": [
        ("--epochs", "epochs", lambda v: v >= 1, ">= 1"),
        ("--batch_size", "batch_size", lambda v: v >= 1, ">= 1"),
        ("--lr", "lr", lambda v: v > 0, "> 0"),
        ("--weight_decay", "weight_decay", lambda v: v >= 0, ">= 0"),
        ("--augment_copies", "augment_copies", lambda v: v >= 0, ">= 0"),
    ],
    "knn": [
        ("--k", "k", lambda v: v >= 1, ">= 1 (the number of neighbours that vote)"),
        ("--temperature", "temperature", lambda v: v > 0, "> 0"),
    ],
    "finetune": [
        ("--fractions", "fractions", lambda v: len(v) > 0 and all(0 < f <= 1 for f in v), "in (0, 1]"),
        ("--finetune.epochs", "finetune.epochs", lambda v: v >= 1, ">= 1"),
        ("--finetune.batch_size", "finetune.batch_size", lambda v: v >= 1, ">= 1"),
        ("--finetune.base_lr", "finetune.base_lr", lambda v: v > 0, "> 0"),
        ("--finetune.num_workers", "finetune.num_workers", lambda v: v >= 0, ">= 0"),
        ("--from_head_layer", "from_head_layer", lambda v: v >= 0, ">= 0 (0: the encoder's output)"),
    ],
    "predict": [("--top_k", "top_k", lambda v: v >= 1, ">= 1 (how many classes to list per image)")],
}


def check_options(command: str, options: Namespace) -> None:
    for flag, key, valid, requirement in OPTION_RULES.get(command, []):
        value = options[key]
        if not valid(value):
            raise ValueError(f"{flag} {value} is invalid: it must be {requirement}.")


def main(argv: list[str] | None = None) -> object:
    """Parse, run one command, and return what it produced (results dict, predictions or export meta)."""
    import sys

    arguments = _only_data_sections(_with_run_config(list(sys.argv[1:] if argv is None else argv)))
    parser = build_parser()
    config = parser.parse_args(arguments)
    command = config.command
    options: Namespace = config[command]
    check_options(command, options)
    checkpoint = Path(options.ckpt)
    if command != "predict":
        read_simclr_checkpoint(checkpoint, "--ckpt")  # before any output folder is made
    if command == "predict":
        predictions = run_predict(checkpoint, options.images, resolve_device(options.device), options.top_k)
        if options.output_dir is not None:
            folder = fresh_output_dir(options.output_dir, checkpoint, command)
            (folder / "predictions.json").write_text(json.dumps(predictions, indent=2) + "\n")
        return predictions
    if command == "export":
        return run_export(checkpoint, lambda: fresh_output_dir(options.output_dir, checkpoint, command))
    existed = options.output_dir is not None and Path(options.output_dir).exists()
    output_dir = fresh_output_dir(options.output_dir, checkpoint, command)
    with removed_if_left_empty(output_dir, existed):
        instantiated = parser.instantiate_classes(config)[command]
        inputs = EvaluationInputs(
            checkpoint, instantiated.data, output_dir, resolve_device(options.device), options.random_init
        )
        if command == "linear":
            return run_linear(
                inputs,
                options.epochs,
                options.lr,
                options.weight_decay,
                options.batch_size,
                options.augment_copies,
                options.seed,
                options.embedding_plot,
            )
        if command == "knn":
            return run_knn(inputs, options.k, options.temperature)
        return run_finetune(inputs, options.fractions, instantiated.finetune, options.from_head_layer)
