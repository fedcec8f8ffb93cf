"""Classify image files with a classifier saved by linear evaluation or fine-tuning."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from datamodules.listing import images_under
from evaluation.models import ClassifierMeta, EncoderClassifier, EncoderSpec, HeadLayersSpec
from reliability.checkpoint_files import read_checkpoint
from reliability.errors import UserError
from views.decode import load_rgb
from views.transforms import eval_transform

CLASSIFIER_HINT = "the classifier.pt that `evaluate.py linear` or `evaluate.py finetune` wrote"


def load_classifier(path: str | Path) -> tuple[EncoderClassifier, ClassifierMeta]:
    """The classifier and what prediction needs, unpickling nothing but tensors and plain values.

    classifier.pt holds {"meta": dataclasses.asdict(ClassifierMeta), "state_dict": ...}: dicts, lists,
    tuples, strings and numbers, so weights_only loading reads it and a crafted file runs nothing.
    """
    saved = read_checkpoint(path, "--ckpt", expected=CLASSIFIER_HINT)
    if not isinstance(saved, dict) or not isinstance(saved.get("meta"), dict) or "state_dict" not in saved:
        raise UserError(
            f"'{path}' (--ckpt) is not a classifier saved by evaluate.py (no 'meta' entry); predict needs "
            f"{CLASSIFIER_HINT}, not a SimCLR checkpoint."
        )
    meta_fields = dict(saved["meta"])
    meta_fields["encoder"] = EncoderSpec(**meta_fields["encoder"])
    meta_fields["mean"], meta_fields["std"] = tuple(meta_fields["mean"]), tuple(meta_fields["std"])
    if meta_fields.get("head_layers") is not None:
        meta_fields["head_layers"] = HeadLayersSpec(**meta_fields["head_layers"])
    meta = ClassifierMeta(**meta_fields)
    if meta.head_layers is None:
        model = EncoderClassifier(meta.encoder.build(), meta.encoder.feature_dim, len(meta.class_names))
    else:
        layers = meta.head_layers
        model = EncoderClassifier(meta.encoder.build(), layers.width, len(meta.class_names), layers.build())
    model.load_state_dict(saved["state_dict"])
    return model.eval(), meta


def image_paths(inputs: Sequence[str]) -> list[Path]:
    """Files as given, folders searched recursively for images (datamodules/listing.py's rules), sorted."""
    paths: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = images_under(path)
            if not found:
                raise FileNotFoundError(f"Folder '{path}' holds no images ({', '.join(IMG_EXTENSIONS)}).")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        elif path.exists():  # opening a FIFO would block until something writes to it
            raise FileNotFoundError(
                f"'{path}' is not a regular file (a FIFO, socket or device); pass image files or folders."
            )
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
