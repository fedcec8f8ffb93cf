"""Any dataset laid out as root/{train,val|test}/<class>/<image>, e.g. ImageNet or a custom one."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from datamodules.base import EvalSplit, SimCLRDataModule
from datamodules.folder_stats import distinct_sizes, estimate_mean_std, folder_native_size, given_statistics
from datamodules.listing import class_folder_names, contains_image, image_files, image_folder
from views.config import Triple
from views.multicrop import SWAV_SMALL_CROP_SCALE
from views.path import ViewPath
from views.transforms import ImageTransform

EXPECTED_LAYOUT = (
    "Expected layout: <root>/train/<class_name>/<image files> and <root>/val/<class_name>/... "
    "(or <root>/test/...), with the same class folders in every split."
)


def _class_folders(split_dir: Path) -> list[str]:
    """The rule the datasets list classes by (datamodules/listing.py), so label indices agree."""
    classes = class_folder_names(split_dir)
    if not classes:
        raise FileNotFoundError(f"No class folders found in '{split_dir}'. {EXPECTED_LAYOUT}")
    empty = [name for name in classes if not contains_image(split_dir / name)]
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
    if root.is_file():
        raise NotADirectoryError(f"ImageFolder root '{root}' is a file, not a folder. {EXPECTED_LAYOUT}")
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
    if len(class_names) < 2:
        raise ValueError(
            f"'{train_dir}' has a single class folder ({class_names[0]!r}); the online linear probe and the "
            "evaluations classify, so they need at least 2 classes. Put the images of each class into its "
            "own folder under train/ and val/."
        )
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

    When every image is one square size, that is the native size: image_size defaults to it (and with it
    the stem), and evaluation keeps every pixel. Otherwise image_size must be given. mean/std, when not
    given, are estimated from a seeded sample of the training images (train.py saves them in config.yaml).
    Without root/val, a stratified slice of root/train validates (val_holdout, default 10%).
    """

    def __init__(
        self,
        root: str,
        batch_size: int,
        num_workers: int = 8,
        image_size: int | None = None,
        jitter_strength: float = 1.0,
        min_crop_scale: float = 0.08,
        blur: bool | None = None,
        pin_memory: bool = True,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        gpu_augment: bool | None = None,
        solarize_p: float = 0.0,
        compile_augment: bool = False,
        view_path: ViewPath = "auto",
        probe_view: bool = False,
        val_holdout: int | float | None = None,
        val_holdout_seed: int = 0,
        max_decoded_side: int = 1024,
        num_small_views: int = 0,
        small_view_size: int | None = None,
        small_crop_scale: tuple[float, float] = SWAV_SMALL_CROP_SCALE,
    ) -> None:
        """Arguments not listed here mean what they mean for every datamodule (SimCLRDataModule).

        Args:
            root: the folder holding train/<class>/ and val/<class>/ and/or test/<class>/.
            image_size: side of the training views in pixels; null: the images' own size when they all
                have one square size (otherwise required).
            mean: per-channel (R, G, B) mean in [0, 1]; null: estimated from 1,000 training images.
            std: per-channel (R, G, B) standard deviation; null: estimated with mean.
        """
        layout = scan_layout(Path(root))
        self.native_image_size = folder_native_size(
            list(dict.fromkeys([layout.train_dir, layout.val_dir, layout.test_dir])), image_size
        )
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
            probe_view=probe_view,
            val_holdout=val_holdout,
            val_holdout_seed=val_holdout_seed,
            max_decoded_side=max_decoded_side,
            num_small_views=num_small_views,
            small_view_size=small_view_size,
            small_crop_scale=small_crop_scale,
        )
        self.layout = layout
        self._statistics: tuple[Triple, Triple] | None = given_statistics(mean, std)

    @property
    def class_names(self) -> list[str]:
        return list(self.layout.class_names)

    @property
    def mean(self) -> Triple:
        return self._pixel_statistics()[0]

    @property
    def std(self) -> Triple:
        return self._pixel_statistics()[1]

    def _pixel_statistics(self) -> tuple[Triple, Triple]:
        """Estimated once, on first use, from a sample seeded alike on every rank."""
        if self._statistics is None:
            self._statistics = estimate_mean_std(list(image_files([self.layout.train_dir])))
        return self._statistics

    def resolved_arguments(self) -> dict[str, object]:
        """Also what it worked out from the images, so a rerun or evaluate.py needs no re-estimate."""
        estimated = {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}
        return {**super().resolved_arguments(), **estimated}

    def has_validation_split(self) -> bool:
        return (Path(self.root) / "val").is_dir()

    @cached_property
    def _train_folder(self) -> ImageFolder:
        """Listed once: the size check and the training set read the same files."""
        return image_folder(self.layout.train_dir, transform=None)

    def _pretrain_images(self) -> Dataset:
        return self._train_folder

    def _training_image_sizes(self) -> list[tuple[int, int]]:
        """Known from the construction's header scan when every image has the native size; otherwise
        read from the training files' headers, without decoding, stopping at the second size found."""
        if self.native_image_size is not None:
            return super()._training_image_sizes()
        return [size for size, _ in distinct_sizes(path for path, _ in self._train_folder.samples)]

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        split_dir = self.layout.val_dir if split == "val" else self.layout.test_dir
        if split == "test" and self.has_validation_split() and split_dir == self.layout.val_dir:
            warnings.warn(
                f"'{self.root}' has no test/ folder, so test/* reports on val/, the images val/* and the "
                "best checkpoint were selected on. For an unbiased test number add a test/ folder, or "
                "rename val/ to test/ (a held-out slice of train/ then validates, --data.val_holdout).",
                stacklevel=2,
            )
        return image_folder(split_dir, transform=transform)
