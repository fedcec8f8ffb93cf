"""Writes small ImageFolder trees for the tests that run the whole training path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(
    root: Path, num_classes: int = 4, train_per_class: int = 12, val_per_class: int = 4, image_size: int = 40
) -> Path:
    """root/{train,val}/class_k/*.png; each class has its own base colour plus noise, so it is learnable."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label in range(num_classes):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            base = rng.integers(0, 256, size=3)
            for index in range(count):
                noise = rng.integers(-40, 40, size=(image_size, image_size, 3))
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root
