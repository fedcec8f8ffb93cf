"""SimCLR datamodules: each yields the training-batch dict and (images, labels) evaluation batches."""

from datamodules.base import SimCLRDataModule
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.imagefolder import ImageFolderDataModule
from datamodules.stl10 import STL10DataModule
from datamodules.streaming import StreamingDataModule

__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ImageFolderDataModule",
    "STL10DataModule",
    "SimCLRDataModule",
    "StreamingDataModule",
]
