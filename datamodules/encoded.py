"""The training images as files, read one whole batch per BatchKey: the source of the batched views of
images of any size.

A folder of JPEGs of varied sizes cannot be decoded once into one tensor (`uint8_cache`), and most
real folders are too large for memory anyway. Here the DataLoader workers read a batch's files, each as
its JPEG bytes or, for what cannot be decoded where the views are made, as pixels (views/jpeg.py); the
batch is decoded and its views made on the accelerator after the transfer. On a CPU-only run the
workers also decode and make the views, so the main process only trains. Either way the views of a
batch are drawn from `view_seed(run_seed, rank, epoch, batch)`, in the resumable order of
`ResumableBatchSampler`, exactly as on the fixed-size batched path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.sampling import BatchKey, view_seed
from views.any_size import AnySizeViewAugmenter
from views.jpeg import decode_images, read_image

CPU = torch.device("cpu")


class EncodedImages(Dataset):
    """Training files and labels [N], read one whole batch per BatchKey.

    Without an augmenter a batch is {"encoded": list of JPEG bytes [n] or pixels [3, H, W] (uint8),
    "orientation": list of EXIF orientations still to apply, "full_size": long [B, 2] (height, width
    as displayed, at full resolution), "name": list of files, "label": [B], "view_seed": int}, and the
    datamodule decodes it where the views are made; with one (CPU runs) the views are made here.
    """

    def __init__(
        self,
        files: Sequence[str],
        labels: np.ndarray,
        run_seed: int,
        rank: int = 0,
        max_decoded_side: int = 1024,
        augmenter: AnySizeViewAugmenter | None = None,
    ) -> None:
        super().__init__()
        self.files = list(files)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.run_seed = run_seed
        self.rank = rank
        self.max_decoded_side = max_decoded_side
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: BatchKey) -> dict[str, object]:  # type: ignore[override]
        indices = key.indices.tolist()
        read = [read_image(self.files[index], self.max_decoded_side) for index in indices]
        labels = self.labels[key.indices]
        seed = view_seed(self.run_seed, self.rank, key.epoch, key.batch)
        batch = {
            "encoded": [image.data for image in read],
            "orientation": [image.orientation for image in read],
            "full_size": torch.tensor([[image.height, image.width] for image in read], dtype=torch.long),
            "name": [self.files[index] for index in indices],
            "label": labels,
            "view_seed": seed,
        }
        if self.augmenter is None:
            return batch
        images = decode_images(batch["encoded"], batch["orientation"], batch["name"], CPU)  # type: ignore[arg-type]
        generator = self.augmenter.generator(CPU, seed)
        return self.augmenter.training_batch(images, full_sizes(batch), labels, generator)


def full_sizes(batch: dict[str, object]) -> list[tuple[int, int]]:
    """The (height, width) of each image at full resolution, read on the host (never a device sync)."""
    sizes: Tensor = batch["full_size"]  # type: ignore[assignment]
    return [(int(height), int(width)) for height, width in sizes.tolist()]
