"""`python shards.py convert ROOT OUT [--max_side N] [--quality Q] ...`: the command line of shards.py."""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import ArgumentParser

from help_text import SHARDS_COMMANDS, SHARDS_DESCRIPTION


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="shards.py", description=SHARDS_DESCRIPTION, exit_on_error=False)
    commands = parser.add_subcommands(dest="command")
    convert = ArgumentParser(
        description="Convert ROOT (train/ and val/ and/or test/, one folder per class) into shards in OUT.",
        exit_on_error=False,
    )
    convert.add_argument(
        "root", type=str, help="The image folder: ROOT/train/<class>/*, ROOT/val/... or ROOT/test/..."
    )
    convert.add_argument(
        "out", type=str, help="A new folder for the shards; an existing one is never overwritten."
    )
    convert.add_argument(
        "--max_side",
        type=int | None,
        default=None,
        help="Scale images larger than N px (longer side) down to N, e.g. 500 for 224 px training.",
    )
    convert.add_argument(
        "--quality",
        type=int,
        default=90,
        help="JPEG quality of re-encoded images (1-95); unchanged JPEGs keep theirs.",
    )
    convert.add_argument(
        "--workers",
        type=int,
        default=_cpu_count(),
        help="Processes that decode and encode (default: every core).",
    )
    convert.add_argument(
        "--chunk_bytes", type=str, default="64MB", help="Size of each shard file (LitData's chunk_bytes)."
    )
    convert.add_argument("--seed", type=int, default=0, help="Seed of the order the images are written in.")
    commands.add_subcommand("convert", convert, help=SHARDS_COMMANDS["convert"])
    return parser


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> None:
    import sys

    config = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    options = config[config.command]
    if options.max_side is not None and options.max_side < 1:
        raise ValueError(f"--max_side {options.max_side} is invalid: it must be a positive number of pixels.")
    if not 1 <= options.quality <= 95:
        raise ValueError(
            f"--quality {options.quality} is invalid: it must be in 1-95 (Pillow's useful range)."
        )
    if options.workers < 1:
        raise ValueError(f"--workers {options.workers} is invalid: it must be >= 1.")
    from conversion.convert import ConvertSettings, convert

    settings = ConvertSettings(
        options.max_side, options.quality, options.workers, options.chunk_bytes, options.seed
    )
    convert(Path(options.root), Path(options.out), settings)
