"""Where evaluation results go: a fresh folder per command, results.json, and a printed table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_FILENAME = "results.json"
RUN_CONFIG_FILENAME = "config.yaml"


def run_folder_of(checkpoint: Path) -> Path | None:
    """The train.py run a checkpoint belongs to (runs/RUN/checkpoints/x.ckpt -> runs/RUN), if any."""
    candidate = checkpoint.resolve().parent.parent
    return candidate if (candidate / RUN_CONFIG_FILENAME).is_file() else None


def fresh_output_dir(given: str | None, checkpoint: Path, command: str) -> Path:
    """A new folder for this evaluation; never one that already holds something.

    Default: <run>/eval/<command>-<timestamp> beside the evaluated run, or runs/eval/... when the
    checkpoint is not inside a run folder.
    """
    if given is not None:
        folder = Path(given)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"Output folder '{folder}' (--output_dir) already holds files; evaluations never overwrite "
                "earlier results. Choose a new folder or leave --output_dir unset for a fresh one."
            )
    else:
        parent = (run_folder_of(checkpoint) or Path("runs")) / "eval"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder, suffix = parent / f"{command}-{stamp}", 1
        while folder.exists():
            suffix += 1
            folder = parent / f"{command}-{stamp}-{suffix}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def removed_if_left_empty(folder: Path, existed: bool) -> Iterator[None]:
    """A command that fails before writing anything leaves no empty result folder (nor an empty eval/);
    a folder that `existed` before the command is the user's and stays."""
    try:
        yield
    except BaseException:
        made = [] if existed else [folder, *([folder.parent] if folder.parent.name == "eval" else [])]
        for empty in made:
            if empty.is_dir() and not any(empty.iterdir()):
                empty.rmdir()
        raise


def write_results(folder: Path, results: dict[str, Any]) -> Path:
    path = folder / RESULTS_FILENAME
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return path


def print_table(
    title: str, rows: list[dict[str, Any]], folder: Path | None = None, console: Console | None = None
) -> None:
    """One row per result (floats in [0, 1] are accuracies, printed as percentages), then every file
    written into `folder`, one full path per line: never wrapped, so each can be copied."""
    console = console or Console()
    table = Table(title=title)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_format(row.get(column)) for column in columns))
    console.print(table)
    if folder is not None:
        for path in sorted(path for path in folder.rglob("*") if path.is_file()):
            console.print(str(path), soft_wrap=True, highlight=False)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{100 * value:.2f}%" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return "" if value is None else str(value)
