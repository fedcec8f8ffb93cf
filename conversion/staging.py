"""Where a conversion writes: `OUT.incomplete` while it runs, renamed to `OUT` only once complete.

A conversion of a million images runs for hours and may be killed at any point. Everything goes to
`OUT.incomplete` first; `dataset.json` is written last and the folder is renamed to `OUT` in one
step (rename(2) within a file system is atomic), so `OUT` either holds a complete dataset or does not
exist. An existing `OUT` is never touched. A `OUT.incomplete` left by a killed conversion is removed
by the next one (it says so); one that another running conversion holds (flock(2), released by the
kernel when that process ends, even by SIGKILL) stops this one instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reliability.errors import UserError

INCOMPLETE_SUFFIX = ".incomplete"
LOCK_FILENAME = ".converting.lock"


def incomplete_path(out: Path) -> Path:
    return out.with_name(out.name + INCOMPLETE_SUFFIX)


def refuse_existing(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise FileExistsError(
            f"'{out}' already exists; shards.py never overwrites a dataset. Choose another OUT, or delete "
            f"'{out}' first."
        )


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yields the folder to write into; renames it to `out` when the block ends without an exception.

    A failed conversion (an unreadable image, Ctrl-C) removes its folder; a killed one leaves it to
    the next conversion into `out`.
    """
    refuse_existing(out)
    staging = incomplete_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = _claim(staging)
    try:
        yield staging
        refuse_existing(out)  # made by someone else while this conversion ran
        (staging / LOCK_FILENAME).unlink()
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        lock.close()


def _claim(staging: Path) -> object:
    """A fresh, locked `staging` folder; the unfinished output of a killed conversion is removed first."""
    if staging.exists():
        held = _locked(staging / LOCK_FILENAME)
        if held is None:
            raise UserError(
                f"Another conversion is writing '{staging}' (it holds {LOCK_FILENAME}); wait for it to end, "
                "or convert into another OUT."
            )
        held.close()
        warnings.warn(
            f"Removing '{staging}', the unfinished output of an interrupted conversion.", stacklevel=3
        )
        shutil.rmtree(staging)
    staging.mkdir()
    lock = _locked(staging / LOCK_FILENAME)
    if lock is None:  # another conversion made the folder between the two lines above
        raise UserError(f"Another conversion is writing '{staging}'; convert into another OUT.")
    return lock


def _locked(path: Path) -> object | None:
    """The open, exclusively locked file, or None when another process holds the lock."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
