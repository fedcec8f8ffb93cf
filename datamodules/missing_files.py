"""What to do when a downloadable dataset (CIFAR, STL-10) is not on disk and cannot be fetched.

torchvision's own messages ("Dataset not found or corrupted. You can use download=True to download
it", or a bare URLError) say neither which files go where nor what to do on a machine without
internet, where download=True, already the default, is exactly what failed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path


class MissingDatasetError(FileNotFoundError):
    """Raised instead of torchvision's generic errors so users learn exactly which files to provide."""


@dataclass(frozen=True)
class OfficialArchive:
    """The archive torchvision downloads and the folder of files it extracts into the dataset root."""

    dataset_name: str
    url: str
    folder: str
    files: Sequence[str]

    @property
    def archive_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def extracted(self, root: str) -> str:
        return f"'{Path(root) / self.folder}/' with {', '.join(self.files)}"


@contextmanager
def explain_missing_files(archive: OfficialArchive, root: str, downloading: bool) -> Iterator[None]:
    """Turns torchvision's download/integrity failures into one actionable message.

    `downloading`: the block fetches the archive (prepare_data with download=True); otherwise it reads
    files that should already be there. URLError is an OSError; torchvision raises RuntimeError for
    missing or corrupted (md5) files. A failed attempt leaves no litter: folders that did not exist
    before it (torchvision creates the root to download into) are removed again while they are empty.
    """
    created = [folder for folder in (Path(root), *Path(root).parents) if not folder.exists()]
    try:
        yield
    except (OSError, RuntimeError) as err:
        for folder in created:  # deepest first; rmdir refuses a folder that holds anything
            with suppress(OSError):
                folder.rmdir()
        raise MissingDatasetError(_explained(archive, root, downloading, err)) from err


def _explained(archive: OfficialArchive, root: str, downloading: bool, err: BaseException) -> str:
    cause = f"({type(err).__name__}: {err})"
    # torchvision skips the download of an archive already in the root whose md5 matches, and extracts it.
    offline = (
        f"On a machine with internet access download {archive.url}, copy {archive.archive_name} into "
        f"'{root}' here and run again: it is checked (md5) and extracted, nothing is downloaded. Or "
        f"extract it yourself into '{root}', which gives {archive.extracted(root)}."
    )
    if downloading and isinstance(err, OSError):
        return f"{archive.dataset_name} could not be downloaded into '{root}' {cause}. {offline}"
    if downloading:
        return (
            f"{archive.dataset_name} was downloaded into '{root}' but does not verify {cause}; delete "
            f"'{Path(root) / archive.archive_name}' and '{Path(root) / archive.folder}/' and run again. "
            + offline
        )
    return (
        f"{archive.dataset_name} files are missing or corrupted in '{root}' {cause}. Expected "
        f"{archive.extracted(root)}; --data.download true (the default) downloads them. Without "
        f"internet access: {offline[0].lower()}{offline[1:]}"
    )
