"""What every benchmark writes next to its figures: the machine, its load, the versions, a table, JSON."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

VERSIONED_MODULES = ("torch", "torchvision", "pytorch_lightning", "PIL", "numpy", "kornia", "lightly")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages; other jobs on the machine move per-core figures a lot."""
    return [round(value, 2) for value in os.getloadavg()]


def versions() -> dict[str, str | None]:
    """Versions of the libraries that set the pace; None for an optional one that is not importable."""
    found: dict[str, str | None] = {}
    for name in VERSIONED_MODULES:
        try:
            found[name] = importlib.import_module(name).__version__
        except ImportError:
            found[name] = None
    return found


def gpu_info(device: torch.device) -> dict[str, str]:
    if device.type != "cuda":
        return {"gpu": "none"}
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        driver = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        driver = "unknown (nvidia-smi unavailable)"
    return {"gpu": torch.cuda.get_device_name(device), "driver": driver, "cuda": str(torch.version.cuda)}


def machine_info(command: str, device: torch.device) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "command": command,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        **gpu_info(device),
        "python": platform.python_version(),
        "versions": versions(),
        "load_average_start": load_average(),
    }


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return "-" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, machine: dict[str, Any], results: list[dict[str, Any]], **extra: Any) -> None:
    path.write_text(json.dumps({"machine": machine, "results": results, **extra}, indent=2) + "\n")
