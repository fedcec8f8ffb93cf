"""One actionable message when a downloadable dataset's files are missing and cannot be downloaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class MissingDatasetError(FileNotFoundError):
    """Raised instead of torchvision's generic errors so users learn exactly which files to provide."""


@contextmanager
def explain_missing_files(dataset_name: str, root: str, what_to_provide: str) -> Iterator[None]:
    """Turns torchvision's download/integrity failures into one actionable message.

    URLError is an OSError; torchvision raises RuntimeError for missing or corrupted (md5) files.
    A failed attempt leaves no litter: folders that did not exist before it (torchvision creates the
    root to download into) are removed again while they are empty.
    """
    created = [folder for folder in (Path(root), *Path(root).parents) if not folder.exists()]
    try:
        yield
    except (OSError, RuntimeError) as err:
        for folder in created:  # deepest first; rmdir refuses a folder that holds anything
            with suppress(OSError):
                folder.rmdir()
        raise MissingDatasetError(
            f"{dataset_name} files are missing or corrupted in '{root}' ({type(err).__name__}: {err}). "
            f"Put {what_to_provide} into '{root}', or run once with download=True on a machine with "
            "internet access."
        ) from err
