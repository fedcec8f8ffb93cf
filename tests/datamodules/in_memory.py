"""A real SimCLRDataModule over images held in memory, for tests of training, resume and DDP."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from datamodules.base import SimCLRDataModule


class InMemoryDataModule(SimCLRDataModule):
    """The base datamodule's samplers, view paths and resume state over the images `_pretrain_images`
    returns (uint8 [3, 16, 16], label); validation and test are two blank images, since these tests
    train."""

    native_image_size = 16
    class_names = ["even", "odd"]
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def _eval_images(self, split: str, transform) -> Dataset:
        side = self.native_image_size
        return TensorDataset(torch.zeros(2, 3, side, side), torch.tensor([0, 1]))
