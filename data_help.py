"""`--help` of train.py's subcommands and evaluate.py's data commands lists the datamodule's options.

jsonargparse shows a subclass-typed argument such as `--data` as a single line: its options
(`--data.root`, `--data.batch_size`, ...) appear only with `--data.help CLASS`, which few know of.
The help action here appends them to the help: those of the datamodule chosen before `--help` (by
`--config` or `--data`), else those of SimCLRDataModule, which every datamodule builds on. An option
that a datamodule re-declares without a docstring entry shows the text of the class it inherits from.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

from jsonargparse import ArgumentParser, Namespace

from datamodules import SimCLRDataModule

DATA_KEY = "data"
HELP_TEXT = "Show this help, the options of the chosen datamodule last, and exit."
# jsonargparse 4.40 (our floor) marks a missing help text with this; 4.53 leaves it None.
JSONARGPARSE_EMPTY_HELP = "_EMPTY_HELP_"


class HelpWithDataOptions(argparse._HelpAction):
    """`-h/--help`: the parser's own help, then the `--data.*` options of the datamodule chosen so far."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: str | None = None
    ) -> None:
        print(parser.format_help())
        print(data_options_help(chosen_datamodule(namespace)))
        parser.exit()


def add_help_with_data_options(parser: ArgumentParser) -> None:
    """For parsers made with add_help=False: their `-h/--help` becomes HelpWithDataOptions. A parser
    that has its own (LightningCLI's parser without subcommands, run=False) keeps it."""
    if "--help" not in parser._option_string_actions:
        parser.add_argument("-h", "--help", action=HelpWithDataOptions, help=HELP_TEXT)


def chosen_datamodule(namespace: Any) -> type[SimCLRDataModule] | None:
    """The class a `--config` or `--data` given before `--help` chose; None when none is chosen yet."""
    class_path = namespace.get(f"{DATA_KEY}.class_path") if isinstance(namespace, Namespace) else None
    if not isinstance(class_path, str) or "." not in class_path:
        return None
    module_name, _, class_name = class_path.rpartition(".")
    chosen = getattr(importlib.import_module(module_name), class_name, None)
    return chosen if isinstance(chosen, type) and issubclass(chosen, SimCLRDataModule) else None


def data_options_help(chosen: type[SimCLRDataModule] | None) -> str:
    """The `--data.*` options of `chosen` (of SimCLRDataModule when None), each with its help text."""
    shown = chosen or SimCLRDataModule
    parser = _options_parser(shown)
    ancestors = [_options_parser(base) for base in shown.__mro__[1:] if _is_datamodule(base)]
    options = [action for action in parser._actions if action.dest.startswith(f"{DATA_KEY}.")]
    for action in options:
        if _has_no_help(action):
            action.help = _inherited_help(action.dest, ancestors) or action.help
    if chosen is None:
        names = ", ".join(sorted(_datamodule_names()))
        title = (
            f"--data.* options every datamodule shares (none is chosen yet: --config FILE or --data NAME "
            f"before --help lists that datamodule's own; NAME: {names})"
        )
    else:
        title = f"--data.* options of {chosen.__name__} (--data NAME before --help lists another's)"
    formatter = parser._get_formatter()
    formatter.start_section(title)
    formatter.add_arguments(options)
    formatter.end_section()
    return formatter.format_help()


def _options_parser(datamodule: type) -> ArgumentParser:
    parser = ArgumentParser(add_help=False)
    parser.add_class_arguments(datamodule, DATA_KEY, fail_untyped=False)
    return parser


def _inherited_help(dest: str, ancestors: Sequence[ArgumentParser]) -> str | None:
    for parser in ancestors:
        for action in parser._actions:
            if action.dest == dest and not _has_no_help(action):
                return action.help
    return None


def _has_no_help(action: argparse.Action) -> bool:
    return not action.help or action.help == JSONARGPARSE_EMPTY_HELP


def _is_datamodule(candidate: type) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, SimCLRDataModule)


def _datamodule_names() -> list[str]:
    import datamodules

    return [
        name
        for name in datamodules.__all__
        if _is_datamodule(getattr(datamodules, name)) and getattr(datamodules, name) is not SimCLRDataModule
    ]
