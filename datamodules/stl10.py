"""STL-10: pretrain on train+unlabeled (105k images), probe on its labelled part, evaluate on test."""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch.utils.data import Dataset
from torchvision.datasets import STL10

from datamodules.base import EvalSplit, SimCLRDataModule
from datamodules.missing_files import OfficialArchive, explain_missing_files
from views.config import Triple
from views.transforms import ImageTransform

STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class STL10DataModule(SimCLRDataModule):
    """STL-10 at its native 96 px (blur on by default, as in the paper for larger images).

    Unlabeled images carry label -1 (torchvision's convention), which the online probe must skip.
    """

    native_image_size = 96

    @property
    def class_names(self) -> list[str]:
        return list(STL10_CLASSES)

    @property
    def mean(self) -> Triple:
        return (0.4467, 0.4398, 0.4066)

    @property
    def std(self) -> Triple:
        return (0.2603, 0.2566, 0.2713)

    def _missing_files_explained(self, downloading: bool = False) -> AbstractContextManager[None]:
        files = [name for name, _ in STL10.train_list + STL10.test_list]
        archive = OfficialArchive("STL-10", STL10.url, STL10.base_folder, files)
        return explain_missing_files(archive, self.root, downloading)

    def _download(self) -> None:
        # The test split is the cheapest to load; the download fetches every split.
        with self._missing_files_explained(downloading=True):
            STL10(self.root, split="test", download=True)

    def _pretrain_images(self) -> Dataset:
        with self._missing_files_explained():
            return STL10(self.root, split="train+unlabeled", download=False)

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        # STL-10 has no validation split: "val" is the test split only with --data.val_holdout 0.
        with self._missing_files_explained():
            return STL10(self.root, split="test", transform=transform, download=False)
