"""Which image files a folder holds, each listed once, in a fixed order.

The training and evaluation splits, the native-size scan and the mean/std sample all list files here,
so they agree on what counts as an image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from views.decode import load_rgb
from views.transforms import ImageTransform


def image_files(split_dirs: Iterable[Path]) -> Iterator[str]:
    """Image paths under the split folders, in a fixed (sorted) order."""
    for split_dir in split_dirs:
        for folder, subfolders, files in os.walk(split_dir):
            subfolders.sort()
            for name in sorted(files):
                if name.lower().endswith(IMG_EXTENSIONS):
                    yield os.path.join(folder, name)


def folders_once(top: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, names of its files) for `top` and every folder below it, each real folder once.

    Symbolic links are followed (datasets are often assembled from links), but a link back to a folder
    already seen is not: a link loop would otherwise repeat its images until the path is too long.
    """
    visited: set[str] = set()
    pending = [top]
    while pending:
        folder = pending.pop()
        real = os.path.realpath(folder)
        if real in visited:
            continue
        visited.add(real)
        files = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.is_file():
                    files.append(entry.name)
        yield folder, files


def contains_image(directory: Path) -> bool:
    """Stops at the first folder with an image, so large class folders cost one partial listing."""
    return any(
        name.lower().endswith(IMG_EXTENSIONS) for _, files in folders_once(str(directory)) for name in files
    )


class ImageFolderOnce(ImageFolder):
    """torchvision's ImageFolder (same labels, same sample order) that lists each image file once.

    torchvision walks class folders with followlinks=True, so a symbolic link loop inside one repeats
    its images until the path is too long, and then fails.
    """

    @staticmethod
    def make_dataset(
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        def accept(path: str) -> bool:
            return is_valid_file(path) if is_valid_file else path.lower().endswith(extensions or ())

        samples: list[tuple[str, int]] = []
        for name in sorted(class_to_idx):
            seen: set[str] = set()
            for folder, files in sorted(folders_once(os.path.join(directory, name))):
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    real = os.path.realpath(path)
                    if real not in seen and accept(path):
                        seen.add(real)
                        samples.append((path, class_to_idx[name]))
        return samples


def image_folder(split_dir: Path, transform: ImageTransform | None) -> ImageFolder:
    """torchvision's ImageFolder, which says in one warning how many non-image files it left out.

    Files without an image extension (README.txt, .DS_Store, label files) are skipped rather than
    fatal: they are common in real folders and harmless.
    """
    skipped: list[str] = []

    def is_image(path: str) -> bool:
        if path.lower().endswith(IMG_EXTENSIONS):
            return True
        skipped.append(path)
        return False

    dataset = ImageFolderOnce(str(split_dir), transform=transform, loader=load_rgb, is_valid_file=is_image)
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} non-image file(s) in '{split_dir}' (e.g. '{skipped[0]}'); only files "
            f"ending in {', '.join(IMG_EXTENSIONS)} are read.",
            stacklevel=2,
        )
    return dataset
