"""Classify image files with a classifier saved by linear evaluation or fine-tuning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from datamodules.imagefolder import load_rgb
from datamodules.transforms import eval_transform
from evaluation.models import ClassifierMeta, EncoderClassifier


def image_paths(inputs: Sequence[str]) -> list[Path]:
    """Files as given, folders searched recursively for images, in sorted order."""
    paths: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(IMG_EXTENSIONS)
            )
            if not found:
                raise FileNotFoundError(f"Folder '{path}' holds no images ({', '.join(IMG_EXTENSIONS)}).")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"Image '{path}' does not exist; pass image files or folders of images.")
    return paths


@torch.no_grad()
def predict_images(
    model: EncoderClassifier,
    meta: ClassifierMeta,
    paths: Sequence[Path],
    device: torch.device,
    top_k: int = 1,
    batch_size: int = 64,
) -> list[dict[str, object]]:
    """Per image, the top_k classes with their softmax probabilities, preprocessed as in evaluation."""
    transform = eval_transform(meta.image_size, meta.mean, meta.std, meta.native_image_size)
    model.to(device).eval()
    top_k = min(top_k, len(meta.class_names))
    predictions: list[dict[str, object]] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = torch.stack([transform(load_rgb(str(path))) for path in chunk]).to(device)
        probabilities = model(images).float().softmax(dim=1).cpu()
        values, indices = probabilities.topk(top_k, dim=1)
        for path, row_values, row_indices in zip(chunk, values, indices, strict=True):
            predictions.append(
                {
                    "image": str(path),
                    "classes": [meta.class_names[int(i)] for i in row_indices],
                    "probabilities": [float(v) for v in row_values],
                }
            )
    return predictions
