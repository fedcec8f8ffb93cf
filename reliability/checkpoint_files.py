"""Reading checkpoint files a user names: never unpickling code, and one line for every bad file.

Every torch.load here uses weights_only=True: a checkpoint is data, and a crafted pickle could
otherwise run any code on load. Files are memory-mapped, so checking a checkpoint before Lightning
loads it costs the header, not another read of the weights.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from reliability.errors import UserError

LIGHTNING_VERSION_KEY = "pytorch-lightning_version"
SIMCLR_CHECKPOINT_HINT = "a checkpoint written by train.py, e.g. runs/RUN/checkpoints/last.ckpt"
# Values of --ckpt_path that Lightning resolves itself rather than naming a file.
LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc")


def read_checkpoint(path: str | Path, flag: str, expected: str = SIMCLR_CHECKPOINT_HINT) -> Any:
    """The unpickled contents of `path` (tensors and plain values only), or a UserError naming `flag`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint '{path}' ({flag}) does not exist; pass {expected}.")
    if path.is_dir():
        raise UserError(f"'{path}' ({flag}) is a folder, not a checkpoint file; pass {expected}.")
    if path.stat().st_size == 0:
        raise UserError(f"Checkpoint '{path}' ({flag}) is empty (0 bytes); pass {expected}.")
    try:
        return _load_weights_only(path)
    except pickle.UnpicklingError as error:
        raise UserError(
            f"'{path}' ({flag}) holds Python objects other than tensors and plain values, so it was not "
            f"loaded: unpickling such a file can run arbitrary code. Pass {expected}."
        ) from error
    except Exception as error:  # noqa: BLE001 - the unpickler fails in many ways on a file that is not one
        raise UserError(
            f"'{path}' ({flag}) is not a readable PyTorch checkpoint: it is truncated, corrupted or another "
            f"kind of file. Pass {expected}."
        ) from error


def read_simclr_checkpoint(path: str | Path, flag: str) -> dict[str, Any]:
    """Like read_checkpoint, and the file must be a Lightning checkpoint of the SimCLR module."""
    saved = read_checkpoint(path, flag)
    hparams = saved.get("hyper_parameters") if isinstance(saved, dict) else None
    if (
        not isinstance(saved, dict)
        or LIGHTNING_VERSION_KEY not in saved
        or "state_dict" not in saved
        or not isinstance(hparams, dict)
        or "backbone" not in hparams
    ):
        raise UserError(
            f"'{path}' ({flag}) is not a SimCLR checkpoint written by train.py ({_describe(saved)}); pass "
            f"{SIMCLR_CHECKPOINT_HINT}."
        )
    return saved


def _load_weights_only(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        # Files in torch's legacy (pre-1.6) format cannot be memory-mapped; they load whole.
        return torch.load(path, map_location="cpu", weights_only=True)


def _describe(saved: Any) -> str:
    if not isinstance(saved, dict):
        return f"it holds a {type(saved).__name__}"
    if "meta" in saved and "state_dict" in saved:
        return "it is a classifier.pt of evaluate.py"
    if saved and all(isinstance(value, torch.Tensor) for value in saved.values()):
        return "it is a plain state_dict of tensors"
    keys = ", ".join(sorted(map(str, saved))[:5])
    return f"its top-level keys are {keys or 'none'}"

