"""CIFAR-10 / CIFAR-100: the train split pretrains and trains the probe, the test split evaluates."""

from __future__ import annotations

from contextlib import AbstractContextManager

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100

from datamodules.base import EvalSplit, SimCLRDataModule
from datamodules.missing_files import OfficialArchive, explain_missing_files
from views.config import Triple
from views.transforms import ImageTransform

# Class names are constants so num_classes/class_names work before any file is read.
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle",
    "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon",
    "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip


class CIFAR10DataModule(SimCLRDataModule):
    """CIFAR-10 at 32 px (the SimCLR paper's small-image setting: no blur)."""

    native_image_size = 32
    # The usual CIFAR validation slice (5,000 of 50,000), as in the SimCLR paper's hyper-parameter search.
    default_val_holdout = 5000
    dataset_class: type[CIFAR10] = CIFAR10
    display_name = "CIFAR-10"
    _class_names = CIFAR10_CLASSES
    _mean: Triple = (0.4914, 0.4822, 0.4465)
    _std: Triple = (0.2470, 0.2435, 0.2616)

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names)

    @property
    def mean(self) -> Triple:
        return self._mean

    @property
    def std(self) -> Triple:
        return self._std

    def _missing_files_explained(self, downloading: bool = False) -> AbstractContextManager[None]:
        dataset = self.dataset_class
        archive = OfficialArchive(
            self.display_name,
            dataset.url,
            dataset.base_folder,
            [name for name, _ in dataset.train_list + dataset.test_list] + [dataset.meta["filename"]],
        )
        return explain_missing_files(archive, self.root, downloading)

    def _download(self) -> None:
        # The test split is the cheaper one to load; the download fetches both.
        with self._missing_files_explained(downloading=True):
            self.dataset_class(self.root, train=False, download=True)

    def _pretrain_images(self) -> Dataset:
        with self._missing_files_explained():
            return self.dataset_class(self.root, train=True, download=False)

    def _eval_images(self, split: EvalSplit, transform: ImageTransform) -> Dataset:
        # CIFAR has no validation split: "val" is the test split only with --data.val_holdout 0.
        with self._missing_files_explained():
            return self.dataset_class(self.root, train=False, transform=transform, download=False)


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100 with its 100 fine labels."""

    dataset_class = CIFAR100
    display_name = "CIFAR-100"
    _class_names = CIFAR100_CLASSES
    _mean = (0.5071, 0.4865, 0.4409)
    _std = (0.2673, 0.2564, 0.2762)
