"""The training set decoded once into one uint8 tensor, served as whole batches of indices.

The batched view path needs nothing from the loader but raw pixels: decoding every image once
(50,000 CIFAR images are 150 MB, STL-10's 105,000 are 2.9 GB) and keeping them on the accelerator turns
loading a batch into one gather, with no worker processes and no host-to-device copy. On a CPU run
the same gather happens in the DataLoader workers, which also make the views (see views.path).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF

from datamodules.sampling import BatchKey, view_seed
from views.batched import BatchViewAugmenter

# At most this share of the free accelerator memory goes to the cached images; the rest is for training.
DEVICE_MEMORY_SHARE = 0.4
DECODE_BATCH = 256


def _numpy_images_and_labels(dataset: Dataset) -> tuple[Tensor, Tensor] | None:
    """torchvision's CIFAR (data [N, H, W, 3], targets) and STL-10 (data [N, 3, H, W], labels) hold pixels."""
    data = getattr(dataset, "data", None)
    labels = getattr(dataset, "targets", None)
    if labels is None:
        labels = getattr(dataset, "labels", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 4 or labels is None:
        return None
    images = torch.from_numpy(data)
    if images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    return images.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.long)


def _to_uint8_batch(samples: Sequence[tuple[Image.Image | Tensor, int]]) -> tuple[list[Tensor], Tensor]:
    """DataLoader collate for decoding: sizes may still differ here, the caller reports them."""
    images = [TF.pil_to_tensor(image) if isinstance(image, Image.Image) else image for image, _ in samples]
    return images, torch.tensor([int(label) for _, label in samples], dtype=torch.long)


def decode_to_uint8(dataset: Dataset, num_workers: int, where: str) -> tuple[Tensor, Tensor]:
    """All (image, label) pairs of `dataset` as uint8 [N, 3, H, W] and long [N]; every image one size."""
    direct = _numpy_images_and_labels(dataset)
    if direct is not None:
        return direct
    loader = DataLoader(
        dataset, batch_size=DECODE_BATCH, num_workers=num_workers, collate_fn=_to_uint8_batch, shuffle=False
    )
    chunks: list[Tensor] = []
    label_chunks: list[Tensor] = []
    for images, labels in loader:
        shapes = {tuple(image.shape) for image in images}
        if chunks:
            shapes.add(tuple(chunks[0].shape[1:]))
        if len(shapes) > 1:
            raise ValueError(
                f"--data.view_path batched keeps the training images of '{where}' as one tensor, so they "
                f"must all have one size, but they come in {sorted(shapes)[:2]} (C, H, W). Resize them "
                "offline to one size, or use --data.view_path per_image."
            )
        chunks.append(torch.stack(images))
        label_chunks.append(labels)
    return torch.cat(chunks), torch.cat(label_chunks)


def place_images(images: Tensor, labels: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """On the accelerator when the images fit comfortably, otherwise in pinned host memory.

    Pinned host memory makes each batch's copy asynchronous; only CUDA reports its free memory, so
    other accelerators get the images moved and raise their own out-of-memory error if they do not fit.
    """
    if device.type == "cpu":
        return images, labels
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if images.nbytes > DEVICE_MEMORY_SHARE * free_bytes:
            return images.pin_memory(), labels
    return images.to(device), labels.to(device)


class CachedImages(Dataset):
    """All training images as uint8 [N, 3, H, W] and labels [N], read one whole batch per BatchKey.

    Without an augmenter a batch is {"images": uint8 [B, 3, H, W], "label": [B], "view_seed": int} and
    the views are made after the transfer to the accelerator; with one (CPU runs) the views are made
    here, inside the DataLoader workers, and a batch is already the training contract. Either way the
    views of a batch are drawn from `view_seed(run_seed, rank, epoch, batch)`.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        run_seed: int,
        rank: int = 0,
        augmenter: BatchViewAugmenter | None = None,
    ) -> None:
        super().__init__()
        self.images = images
        self.labels = labels
        self.run_seed = run_seed
        self.rank = rank
        self.augmenter = augmenter

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: BatchKey) -> dict[str, Tensor | int]:  # type: ignore[override]
        images, labels = self.images[key.indices], self.labels[key.indices]
        seed = view_seed(self.run_seed, self.rank, key.epoch, key.batch)
        if self.augmenter is None:
            return {"images": images, "label": labels, "view_seed": seed}
        return self.augmenter.training_batch(images, labels, self.augmenter.generator(images.device, seed))
