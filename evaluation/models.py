"""Encoders out of SimCLR checkpoints, and the classifier that linear evaluation and fine-tuning save.

A saved classifier carries everything prediction needs (architecture, weights, class names, image
size and normalisation), so `evaluate.py predict` needs no datamodule and no config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_modules.backbones import build_backbone
from lightning_modules.simclr import ProjectionHead, SimCLR


def load_simclr(checkpoint: str | Path, random_init: bool = False) -> SimCLR:
    """The pretrained module, or (random_init) the same architecture with fresh weights as a baseline."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"Checkpoint '{path}' does not exist (--ckpt). Pass a SimCLR checkpoint written by train.py, "
            "e.g. runs/RUN/checkpoints/last.ckpt."
        )
    module = SimCLR.load_from_checkpoint(path, map_location="cpu")
    if random_init:
        module = SimCLR(**module.hparams)
    return module


@dataclass
class EncoderSpec:
    """How to rebuild an encoder: the backbone name, the image size it was built for, its stem and
    (ViTs) patch size; classifiers saved before patch_size existed load with its default, None."""

    backbone: str
    image_size: int
    cifar_stem: bool | None
    feature_dim: int
    patch_size: int | None = None

    @classmethod
    def of(cls, module: SimCLR) -> EncoderSpec:
        hparams = module.hparams
        return cls(
            hparams.backbone, hparams.image_size, hparams.cifar_stem, module.feature_dim,
            hparams.get("patch_size"),
        )

    def build(self) -> nn.Module:
        encoder, _ = build_backbone(self.backbone, self.image_size, self.cifar_stem, self.patch_size)
        return encoder


@dataclass
class HeadLayersSpec:
    """How to rebuild the first `count` layers of a SimCLR projection head (SimCLR v2's fine-tuning
    from the head, `evaluate.py finetune --from_head_layer`): the head's settings and the count."""

    input_dim: int
    hidden_dim: int
    output_dim: int
    num_layers: int
    batch_norm: bool
    count: int

    @classmethod
    def of(cls, module: SimCLR, count: int) -> HeadLayersSpec:
        hparams = module.hparams
        head = cls(
            module.feature_dim, hparams.projection_hidden_dim or module.feature_dim, hparams.projection_dim,
            hparams.projection_layers, hparams.projection_batchnorm, count,
        )  # fmt: skip
        if not 0 <= count <= head.num_layers:
            raise ValueError(
                f"--from_head_layer {count} is not a layer of this checkpoint's projection head, which has "
                f"{head.num_layers} (projection_layers); use 0 (the encoder's output, SimCLR v1) to "
                f"{head.num_layers} (the head's output)."
            )
        return head

    @property
    def width(self) -> int:
        """Width of the last kept layer's output, which the classifier reads."""
        if self.count == 0:
            return self.input_dim
        return self.output_dim if self.count == self.num_layers else self.hidden_dim

    def build(self) -> nn.Sequential:
        head = ProjectionHead(
            self.input_dim, self.hidden_dim, self.output_dim, self.num_layers, self.batch_norm
        )
        return head.first_layers(self.count)


class EncoderClassifier(nn.Module):
    """Encoder, then optionally the first layers of the projection head, then a linear layer: the model
    linear evaluation and fine-tuning produce. Without head layers `projection` is an empty Sequential,
    which has no state: the keys are `encoder.*` and `head.*`, as before head layers existed."""

    def __init__(
        self, encoder: nn.Module, feature_dim: int, num_classes: int, head_layers: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = head_layers if head_layers is not None else nn.Sequential()
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.projection(self.encoder(images)))


@dataclass
class ClassifierMeta:
    """What prediction needs besides the weights; stored next to them in classifier.pt."""

    encoder: EncoderSpec
    class_names: list[str]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    # The side of every image of the dataset it was trained on (None: images of any size); decides the
    # resize of the evaluation transform, so prediction preprocesses exactly like evaluation.
    native_image_size: int | None
    protocol: str
    extra: dict[str, Any] = field(default_factory=dict)
    # The projection-head layers between encoder and classifier (None: none, and classifiers saved
    # before `--from_head_layer` existed).
    head_layers: HeadLayersSpec | None = None


def save_classifier(model: EncoderClassifier, meta: ClassifierMeta, path: Path) -> None:
    torch.save({"meta": asdict(meta), "state_dict": model.state_dict()}, path)
