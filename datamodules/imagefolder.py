"""Any dataset laid out as root/{train,val|test}/<class>/<image>, e.g. ImageNet or a custom one."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from datamodules.base import EvalSplit, SimCLRDataModule, ViewPath
from datamodules.transforms import ImageTransform, Triple
from reliability.errors import UserError

IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
EXPECTED_LAYOUT = (
    "Expected layout: <root>/train/<class_name>/<image files> and <root>/val/<class_name>/... "
    "(or <root>/test/...), with the same class folders in every split."
)


class UnreadableImageError(UserError):
    """An image file that PIL cannot decode: not an image, truncated, or corrupted."""


def load_rgb(path: str) -> Image.Image:
    """Every mode (L, RGBA, P, CMYK, ...) becomes 3-channel RGB so all images batch together.

    A file that does not decode stops the run with its name: hours into an epoch, "cannot identify
    image file" from deep inside a DataLoader worker does not say which of a million files to fix.
    """
    try:
        with Image.open(path) as image:
            if image.mode == "P":
                # Palette images with transparency must go through RGBA, or PIL warns on every load.
                image = image.convert("RGBA")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        # PIL reports truncated data as OSError and some malformed headers as SyntaxError/ValueError.
        raise UnreadableImageError(
            f"Image file '{path}' cannot be read ({type(error).__name__}: {error}); it is not an image, or "
            "it is truncated or corrupted. Replace or delete it."
        ) from error


def _contains_image(directory: Path) -> bool:
    """Stops at the first image, so large class folders cost one partial directory listing."""
    subdirectories = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.lower().endswith(IMG_EXTENSIONS):
                return True
            if entry.is_dir():
                subdirectories.append(Path(entry.path))
    return any(_contains_image(subdirectory) for subdirectory in subdirectories)


def _class_folders(split_dir: Path) -> list[str]:
    """Same rule as torchvision's ImageFolder (every sub-directory, sorted), so label indices agree."""
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"No class folders found in '{split_dir}'. {EXPECTED_LAYOUT}")
    empty = [name for name in classes if not _contains_image(split_dir / name)]
    if empty:
        raise FileNotFoundError(
            f"Class folder(s) without images in '{split_dir}': {empty}. Add images "
            f"(extensions {', '.join(IMG_EXTENSIONS)}) or remove the folder(s) from every split."
        )
    return classes


@dataclass(frozen=True)
class FolderLayout:
    class_names: list[str]
    train_dir: Path
    val_dir: Path
    test_dir: Path


def scan_layout(root: Path) -> FolderLayout:
    """Checks the whole tree up front so a bad layout fails at construction, not hours into training."""
    if not root.is_dir():
        raise FileNotFoundError(f"ImageFolder root '{root}' does not exist. {EXPECTED_LAYOUT}")
    train_dir, val_dir, test_dir = root / "train", root / "val", root / "test"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"'{train_dir}' does not exist. {EXPECTED_LAYOUT}")
    if not val_dir.is_dir() and not test_dir.is_dir():
        raise FileNotFoundError(f"Neither '{val_dir}' nor '{test_dir}' exists. {EXPECTED_LAYOUT}")
    val_dir = val_dir if val_dir.is_dir() else test_dir
    test_dir = test_dir if test_dir.is_dir() else val_dir
    class_names = _class_folders(train_dir)
    for split_dir in dict.fromkeys([val_dir, test_dir]):
        split_classes = _class_folders(split_dir)
        if split_classes != class_names:
            missing = sorted(set(class_names) - set(split_classes))
            extra = sorted(set(split_classes) - set(class_names))
            raise ValueError(
                f"The class folders of '{split_dir}' differ from those of '{train_dir}' "
                f"(missing: {missing}, extra: {extra}); labels would not match. Use the same class "
                "folders in every split."
            )
    return FolderLayout(class_names, train_dir, val_dir, test_dir)


class ImageFolderDataModule(SimCLRDataModule):
    """Images of any size and mode; the test split is root/test when it exists, else root/val.

    mean/std default to ImageNet's; pass your dataset's statistics when it looks very different.
    """

    def __init__(
        self,
        root: str,
        batch_size: int,
        num_workers: int = 8,
        image_size: int = 224,
        jitter_strength: float = 1.0,
        min_crop_scale: float = 0.08,
        blur: bool | None = None,
        pin_memory: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        gpu_augment: bool | None = None,
        solarize_p: float = 0.0,
        compile_augment: bool = False,
        view_path: ViewPath = "auto",
    ) -> None:
        # Nothing to download: the images are the user's own.
        super().__init__(
            root,
            batch_size,
            num_workers,
            image_size,
            jitter_strength,
            min_crop_scale,
            blur,
            download=False,
            pin_memory=pin_memory,
            gpu_augment=gpu_augment,
            solarize_p=solarize_p,
            compile_augment=compile_augment,
            view_path=view_path,
        )
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean={mean} and std={std} need 3 values (R, G, B); std must be > 0.")
        self._mean: Triple = (float(mean[0]), float(mean[1]), float(mean[2]))
        self._std: Triple = (float(std[0]), float(std[1]), float(std[2]))

    @cached_property
    def layout(self) -> FolderLayout:
        return scan_layout(Path(self.root))

    @property
    def class_names(self) -> list[str]:
        return list(self.layout.class_names)

    @property
    def mean(self) -> Triple:
        return self._mean

    @property
    def std(self) -> Triple:
        return self._std

    @cached_property
    def _train_folder(self) -> ImageFolder:
        """Listed once: the size check and the training set read the same files."""
        return _image_folder(self.layout.train_dir, transform=None)

    def _pretrain_images(self) -> Dataset:
        return self._train_folder

    def _training_image_sizes(self) -> list[tuple[int, int]]:
        """Read from the file headers, without decoding; stops at the second size found."""
        return distinct_image_sizes(path for path, _ in self._train_folder.samples)

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        split_dir = self.layout.val_dir if split == "val" else self.layout.test_dir
        return _image_folder(split_dir, transform=transform)


def distinct_image_sizes(paths: Iterable[str], limit: int = 2) -> list[tuple[int, int]]:
    """The first `limit` distinct (width, height) among the images, in file order.

    PIL reads only the header on open, so a folder of one size costs one small read per file; the
    usual mixed-size folder stops after a few files.
    """
    sizes: list[tuple[int, int]] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            size = load_rgb(path).size  # raises the one-line error that names the file
        if size not in sizes:
            sizes.append(size)
            if len(sizes) == limit:
                break
    return sizes


def _image_folder(split_dir: Path, transform: ImageTransform | None) -> ImageFolder:
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

    dataset = ImageFolder(str(split_dir), transform=transform, loader=load_rgb, is_valid_file=is_image)
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} non-image file(s) in '{split_dir}' (e.g. '{skipped[0]}'); only files "
            f"ending in {', '.join(IMG_EXTENSIONS)} are read.",
            stacklevel=2,
        )
    return dataset
