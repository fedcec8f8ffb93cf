"""Which image files a folder holds, each listed once, in a fixed order: the one lister of the template.

The training and evaluation splits, the native-size scan, the mean/std sample and evaluate.py predict
all list files here, so they agree on what counts as an image. Left out, and counted in one warning:
files without an image extension; hidden files and folders (`.DS_Store`, `.git/`), macOS's AppleDouble
files (`._photo.jpg`, which carry an image extension but hold metadata) and `__MACOSX/` folders that
unzipping a macOS archive leaves; and entries that are not regular files (FIFOs, sockets, devices,
broken links), since opening a FIFO named `x.jpg` blocks forever.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from views.decode import load_rgb
from views.transforms import ImageTransform

# What unzipping an archive made on macOS adds beside the real folders.
MACOS_METADATA_FOLDER = "__MACOSX"


def is_hidden(name: str) -> bool:
    """Hidden entries (`.DS_Store`, `.git`, AppleDouble `._x.jpg`) and `__MACOSX`: never data."""
    return name.startswith(".") or name == MACOS_METADATA_FOLDER


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


@dataclass
class SkippedEntries:
    """What a listing left out, by reason, for the one warning that counts them."""

    not_images: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)

    def warning(self, where: Path) -> str | None:
        reasons = [
            (self.not_images, "without an image extension"),
            (self.hidden, "hidden or macOS metadata (names starting with '.', __MACOSX)"),
            (self.not_regular, "not regular files (FIFOs, sockets, devices, broken links)"),
        ]
        parts = [f"{len(paths)} {what} (e.g. '{paths[0]}')" for paths, what in reasons if paths]
        if not parts:
            return None
        total = sum(len(paths) for paths, _ in reasons)
        return (
            f"Skipped {total} file(s) or folder(s) in '{where}': {'; '.join(parts)}. Only regular files "
            f"ending in {', '.join(IMG_EXTENSIONS)} are read."
        )


def folders_once(top: str, skipped: SkippedEntries | None = None) -> Iterator[tuple[str, list[str]]]:
    """(folder, names of its regular, visible files) for `top` and every folder below it, each real
    folder once.

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
                if is_hidden(entry.name):
                    _note(skipped, "hidden", entry.path)
                elif entry.is_dir():
                    pending.append(entry.path)
                elif entry.is_file():
                    files.append(entry.name)
                else:
                    _note(skipped, "not_regular", entry.path)
        yield folder, files


def _note(skipped: SkippedEntries | None, reason: str, path: str) -> None:
    if skipped is not None:
        getattr(skipped, reason).append(path)


def class_folder_names(split_dir: Path, skipped: SkippedEntries | None = None) -> list[str]:
    """torchvision's rule (every sub-folder, sorted), less hidden ones and __MACOSX: not classes."""
    names = []
    with os.scandir(split_dir) as entries:
        for entry in entries:
            if entry.is_dir():
                if is_hidden(entry.name):
                    _note(skipped, "hidden", entry.path)
                else:
                    names.append(entry.name)
    return sorted(names)


def image_files(split_dirs: Iterable[Path]) -> Iterator[str]:
    """The image paths of the split folders' classes, class by class, lazily (the native-size scan
    stops at the second size)."""
    for split_dir in split_dirs:
        for name in class_folder_names(split_dir):
            for folder, files in sorted(folders_once(str(split_dir / name))):
                yield from (os.path.join(folder, file) for file in sorted(files) if is_image_name(file))


def images_under(folder: Path) -> list[Path]:
    """Every image below `folder` (any depth), sorted: what evaluate.py predict classifies."""
    return sorted(
        Path(path, name) for path, files in folders_once(str(folder)) for name in files if is_image_name(name)
    )


def contains_image(directory: Path) -> bool:
    """Stops at the first folder with an image, so large class folders cost one partial listing."""
    return any(is_image_name(name) for _, files in folders_once(str(directory)) for name in files)


class ImageFolderOnce(ImageFolder):
    """torchvision's ImageFolder (same labels, same sample order) that lists each image file once.

    torchvision walks class folders with followlinks=True, so a symbolic link loop inside one repeats
    its images until the path is too long, and then fails; it also takes `__MACOSX/` for a class and
    opens FIFOs. A link that makes one image reachable from two class folders would train it under two
    labels: that stops, naming both places. `skipped` counts what was left out.
    """

    def __init__(self, root: str, skipped: SkippedEntries, **kwargs: object) -> None:
        self.skipped = skipped
        super().__init__(root, **kwargs)  # type: ignore[arg-type]

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = class_folder_names(Path(directory), self.skipped)
        return classes, {name: index for index, name in enumerate(classes)}

    def make_dataset(  # type: ignore[override]
        self,
        directory: str | Path,
        class_to_idx: dict[str, int],
        extensions: tuple[str, ...] | None = None,
        is_valid_file: Callable[[str], bool] | None = None,
        allow_empty: bool = False,
    ) -> list[tuple[str, int]]:
        samples: list[tuple[str, int]] = []
        labels = _LabelsByFolder()
        for name in sorted(class_to_idx):
            seen: set[str] = set()
            for folder, files in sorted(folders_once(os.path.join(directory, name), self.skipped)):
                real_folder = os.path.realpath(folder)
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    real = os.path.realpath(path)
                    if real in seen:
                        continue
                    if not is_image_name(file):
                        self.skipped.not_images.append(path)
                        continue
                    seen.add(real)
                    samples.append((path, class_to_idx[name]))
                    labels.add(name, path, real, real_folder)
        labels.check_each_image_has_one_class()
        return samples


class _LabelsByFolder:
    """Which class each real folder's images were listed under, so a linked folder or file that brings
    another class's images in is found without keeping every file's real path (ImageNet has 1.3 M)."""

    def __init__(self) -> None:
        self.folders: dict[str, tuple[str, str]] = {}  # real folder -> (class, path listed)
        self.linked_files: list[tuple[str, str, str]] = []  # (class, path listed, real path)

    def add(self, class_name: str, path: str, real: str, real_folder: str) -> None:
        if os.path.dirname(real) != real_folder:  # the file itself is a link into another folder
            self.linked_files.append((class_name, path, real))
            return
        owner, first_path = self.folders.setdefault(real_folder, (class_name, path))
        if owner != class_name:
            raise _two_labels(os.path.dirname(first_path), owner, os.path.dirname(path), class_name)

    def check_each_image_has_one_class(self) -> None:
        linked_owner: dict[str, tuple[str, str]] = {}
        for class_name, path, real in self.linked_files:
            in_folder = self.folders.get(os.path.dirname(real))
            owner, first_path = (
                (in_folder[0], real) if in_folder else linked_owner.setdefault(real, (class_name, path))
            )
            if owner != class_name:
                raise _two_labels(first_path, owner, path, class_name)


def _two_labels(first: str, first_class: str, second: str, second_class: str) -> ValueError:
    return ValueError(
        f"'{second}' (class '{second_class}') shows the same image(s) as '{first}' (class '{first_class}') "
        "through a symbolic link, so they would train under two labels. Remove the link, or replace it "
        "with copies of only the images that belong to that class."
    )


def image_folder(split_dir: Path, transform: ImageTransform | None) -> ImageFolder:
    """ImageFolderOnce, which says in one warning what it left out and why.

    Non-image, hidden and special entries (README.txt, .DS_Store, __MACOSX/, label files) are skipped
    rather than fatal: they are common in real folders and harmless.
    """
    skipped = SkippedEntries()
    dataset = ImageFolderOnce(str(split_dir), skipped, transform=transform, loader=load_rgb)
    message = skipped.warning(split_dir)
    if message:
        warnings.warn(message, stacklevel=2)
    return dataset
