"""Config files named with --config: checked up front, so a YAML mistake names its file and line."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from reliability.errors import UserError

CONFIG_FLAG = "--config"


def config_paths(argv: Sequence[str]) -> Iterator[Path]:
    """The files given as `--config FILE` or `--config=FILE`."""
    for index, argument in enumerate(argv):
        if argument == CONFIG_FLAG and index + 1 < len(argv):
            yield Path(argv[index + 1])
        elif argument.startswith(CONFIG_FLAG + "="):
            yield Path(argument.split("=", 1)[1])


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's sections, or a one-line error naming the file (and the line of a YAML syntax error)."""
    if not path.is_file():
        raise FileNotFoundError(f"Config file '{path}' ({CONFIG_FLAG}) does not exist.")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        message = f"Config file '{path}' ({CONFIG_FLAG}) is not valid YAML: {problem}{where}."
        raise UserError(message) from error
    except UnicodeDecodeError as error:
        raise UserError(f"Config file '{path}' ({CONFIG_FLAG}) is not a text (YAML) file.") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserError(
            f"Config file '{path}' ({CONFIG_FLAG}) holds a {type(content).__name__}, not sections such as "
            "trainer:, model:, data:; see configs/*.yaml."
        )
    return content


def check_config_files(argv: Sequence[str]) -> None:
    for path in config_paths(argv):
        read_config_file(path)
