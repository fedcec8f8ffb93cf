"""What each `evaluate.py` command does, given already-parsed arguments.

Every command writes into a fresh output folder: results.json (the numbers, the settings and, for
fine-tuning, the seed and subset indices), the PNGs, and classifier.pt where a classifier is trained.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.base import SimCLRDataModule
from evaluation.data import LabelledTrainSplit, evaluation_split, extract_features, loader
from evaluation.export import export_encoder
from evaluation.finetune import FinetuneSettings, accuracies, finetune, predict_logits
from evaluation.knn import knn_predict
from evaluation.linear import topk_accuracy, train_linear_classifier
from evaluation.models import (
    ClassifierMeta,
    EncoderClassifier,
    EncoderSpec,
    HeadLayersSpec,
    load_simclr,
    save_classifier,
)
from evaluation.plots import confusion_matrix, plot_confusion_matrix, plot_embedding
from evaluation.predict import image_paths, load_classifier, predict_images
from evaluation.results import print_table, write_results
from evaluation.subsets import class_balanced_subset


@dataclass
class EvaluationInputs:
    """What the data commands share: the checkpoint, the datamodule and where results go."""

    checkpoint: Path
    datamodule: SimCLRDataModule
    output_dir: Path
    device: torch.device
    random_init: bool

    def describe(self, command: str) -> dict[str, Any]:
        datamodule = self.datamodule
        return {
            "command": command,
            "checkpoint": str(self.checkpoint),
            "initialisation": "random" if self.random_init else "pretrained",
            "datamodule": type(datamodule).__name__,
            "data_root": str(datamodule.root),
            "image_size": datamodule.image_size,
        }


def resolve_device(name: str) -> torch.device:
    """--device as a torch.device; a device this machine does not have is a one-line error here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"--device {name} asks for GPU {device.index or 0} but this machine has "
            f"{torch.cuda.device_count()}; use --device auto or cpu."
        )
    return device


def _classifier_meta(
    inputs: EvaluationInputs, spec: EncoderSpec, protocol: str, **extra: Any
) -> ClassifierMeta:
    datamodule = inputs.datamodule
    return ClassifierMeta(
        encoder=spec,
        class_names=list(datamodule.class_names),
        image_size=datamodule.image_size,
        mean=tuple(datamodule.mean),
        std=tuple(datamodule.std),
        native_image_size=datamodule.native_image_size,
        protocol=protocol,
        extra=extra,
    )


def _features(inputs: EvaluationInputs, encoder: torch.nn.Module, augment_copies: int = 0):
    """Train features (evaluation view, plus `augment_copies` crop + flip copies) and test features."""
    datamodule = inputs.datamodule
    batch_size, workers = datamodule.batch_size, datamodule.hparams.num_workers
    train = LabelledTrainSplit(datamodule, include_held_out=True)
    train_features, train_labels = extract_features(
        encoder, loader(train.dataset(), batch_size, workers), inputs.device, "train features"
    )
    for _ in range(augment_copies):
        copy_features, copy_labels = extract_features(
            encoder, loader(train.dataset(augment=True), batch_size, workers), inputs.device, "augmented copy"
        )
        train_features = torch.cat([train_features, copy_features])
        train_labels = torch.cat([train_labels, copy_labels])
    test_features, test_labels = extract_features(
        encoder, loader(evaluation_split(datamodule), batch_size, workers), inputs.device, "test features"
    )
    return train_features, train_labels, test_features, test_labels


def run_linear(
    inputs: EvaluationInputs,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    augment_copies: int,
    seed: int,
    embedding_plot: bool,
) -> dict[str, Any]:
    module = load_simclr(inputs.checkpoint, inputs.random_init)
    spec = EncoderSpec.of(module)
    datamodule = inputs.datamodule
    train_x, train_y, test_x, test_y = _features(inputs, module.encoder, augment_copies)
    layer = train_linear_classifier(
        train_x, train_y, datamodule.num_classes, epochs, batch_size, lr, weight_decay, seed
    )
    with torch.no_grad():
        logits = layer(test_x)
    metrics = {"top1": topk_accuracy(logits, test_y, 1), "top5": topk_accuracy(logits, test_y, 5)}
    folder = inputs.output_dir
    matrix = confusion_matrix(logits.argmax(dim=1), test_y, datamodule.num_classes)
    plot_confusion_matrix(
        matrix,
        datamodule.class_names,
        folder / "confusion_matrix.png",
        f"linear evaluation, top-1 {100 * metrics['top1']:.2f}%",
    )
    if embedding_plot:
        plot_embedding(
            test_x,
            test_y,
            datamodule.class_names,
            folder / "embedding_tsne.png",
            "encoder features of the test split",
            seed,
        )
    classifier = EncoderClassifier(module.encoder, spec.feature_dim, datamodule.num_classes)
    classifier.head.load_state_dict(layer.state_dict())
    save_classifier(classifier, _classifier_meta(inputs, spec, "linear"), folder / "classifier.pt")
    settings = {
        "epochs": epochs,
        "lr": lr,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "augment_copies": augment_copies,
        "seed": seed,
    }
    results = {
        **inputs.describe("linear"),
        "settings": settings,
        "train_samples": len(train_y),
        "test_samples": len(test_y),
        "metrics": metrics,
        "confusion_matrix": matrix.tolist(),
    }
    write_results(folder, results)
    print_table("linear evaluation", [{"protocol": "linear", **metrics}], folder)
    return results


def run_knn(inputs: EvaluationInputs, k: int, temperature: float) -> dict[str, Any]:
    module = load_simclr(inputs.checkpoint, inputs.random_init)
    train_x, train_y, test_x, test_y = _features(inputs, module.encoder)
    if k > len(train_y):
        warnings.warn(
            f"--k {k} is more than the {len(train_y)} training images in the feature bank; every image "
            f"votes, as with --k {len(train_y)}.",
            stacklevel=2,
        )
    scores = knn_predict(train_x, train_y, test_x, inputs.datamodule.num_classes, k, temperature)
    metrics = {"top1": topk_accuracy(scores, test_y, 1)}
    results = {
        **inputs.describe("knn"),
        "settings": {"k": k, "temperature": temperature},
        "train_samples": len(train_y),
        "test_samples": len(test_y),
        "metrics": metrics,
    }
    write_results(inputs.output_dir, results)
    rows = [{"protocol": f"kNN (k={k}, T={temperature})", **metrics}]
    print_table("kNN evaluation", rows, inputs.output_dir)
    return results


def run_finetune(
    inputs: EvaluationInputs, fractions: list[float], settings: FinetuneSettings, from_head_layer: int = 0
) -> dict[str, Any]:
    """One fine-tuning per label fraction, each from the same starting weights.

    from_head_layer K > 0 fine-tunes the encoder and the first K layers of the projection head under a
    new linear classifier, as SimCLR v2 does (Chen et al. 2020b: from the first layer of a 3-layer head
    for 1% and 10% of the labels); 0 fine-tunes the encoder alone (SimCLR v1).
    """
    datamodule = inputs.datamodule
    HeadLayersSpec.of(load_simclr(inputs.checkpoint), from_head_layer)  # a bad K fails before any work
    train = LabelledTrainSplit(datamodule, include_held_out=True)
    test = evaluation_split(datamodule)
    rows, per_fraction = [], {}
    for fraction in fractions:
        module = load_simclr(inputs.checkpoint, inputs.random_init)
        spec, head_layers = EncoderSpec.of(module), HeadLayersSpec.of(module, from_head_layer)
        positions = class_balanced_subset(train.labels, fraction, settings.seed)
        model = EncoderClassifier(
            module.encoder, head_layers.width, datamodule.num_classes,
            module.projection_head.first_layers(from_head_layer),
        )  # fmt: skip
        losses = finetune(model, train.dataset(positions, augment=True), settings, inputs.device)
        logits, labels = predict_logits(
            model, test, datamodule.batch_size, settings.num_workers, inputs.device
        )
        metrics = accuracies(logits, labels)
        name = f"{100 * fraction:g}pct"
        folder = inputs.output_dir / name
        folder.mkdir()
        # Indices into the datamodule's training split (train_images()), so the subset can be rebuilt.
        subset = {"seed": settings.seed, "fraction": fraction, "indices": train.indices[positions].tolist()}
        (folder / "subset.json").write_text(json.dumps(subset) + "\n")
        meta = _classifier_meta(inputs, spec, f"finetune-{name}", subset_seed=settings.seed)
        meta.head_layers = head_layers if from_head_layer else None
        save_classifier(model, meta, folder / "classifier.pt")
        per_fraction[name] = {
            "fraction": fraction,
            "labelled_samples": int(len(positions)),
            "metrics": metrics,
            "epoch_losses": losses,
            "subset_file": str(folder / "subset.json"),
        }
        rows.append({"labels": f"{100 * fraction:g}% ({len(positions)})", **metrics})
    results = {
        **inputs.describe("finetune"),
        "settings": asdict(settings),
        "from_head_layer": from_head_layer,
        "test_samples": len(test),
        "fractions": per_fraction,
    }
    write_results(inputs.output_dir, results)
    print_table("fine-tuning", rows, inputs.output_dir)
    return results


def run_predict(
    checkpoint: Path, images: list[str], device: torch.device, top_k: int
) -> list[dict[str, object]]:
    model, meta = load_classifier(checkpoint)
    predictions = predict_images(model, meta, image_paths(images), device, top_k)
    rows = [
        {
            "image": p["image"],
            "class": ", ".join(p["classes"]),
            "probability": ", ".join(f"{v:.3f}" for v in p["probabilities"]),
        }
        for p in predictions
    ]
    print_table(f"predictions of {checkpoint} ({meta.protocol})", rows)
    return predictions


def run_export(checkpoint: Path, make_output_dir: Callable[[], Path]) -> dict[str, Any]:
    """The output folder is made only once the checkpoint proved exportable, so errors leave nothing."""
    module = load_simclr(checkpoint)
    state_dict, meta = export_encoder(module)
    output_dir = make_output_dir()
    torch.save(state_dict, output_dir / "encoder.pt")
    meta["checkpoint"] = str(checkpoint)
    (output_dir / "encoder.json").write_text(json.dumps(meta, indent=2) + "\n")
    print_table(
        "export",
        [
            {
                "file": "encoder.pt",
                "tensors": len(state_dict),
                "parameters": int(sum(np.prod(t.shape) for t in state_dict.values())),
                "backbone": meta["backbone"],
                "constructor": meta["constructor"],
                "cifar_stem": meta["cifar_stem"],
            }
        ],
        output_dir,
    )
    return meta
