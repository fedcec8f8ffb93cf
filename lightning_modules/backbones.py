"""Encoders f(.) for SimCLR: torchvision and timm models, and ViTs built for any image size.

Every backbone is described by a `Constructor` (an importable callable and its arguments) plus two
edits: the optional CIFAR stem and the classifier replaced by Identity. The export writes exactly that
description to encoder.json, so an exported encoder can be rebuilt with the same call elsewhere.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

# Images up to this side get the CIFAR stem: a 7x7 stride-2 conv and a max-pool would shrink a
# 32 px image to 8 px before the first residual block and throw away most of its detail.
SMALL_IMAGE_MAX_SIZE = 64

# Attribute names under which torchvision models keep their classification head.
HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")

TIMM_PREFIX = "timm/"
TIMM_PIN = "timm==1.0.31"

# Patch sides tried from the coarsest; the first that divides the image and leaves at least
# MIN_PATCHES_PER_SIDE patches per side wins: 16 px at 224, 8 px at 96 (and 64), 4 px at 32, 2 px at
# 16. Fewer than 8x8 tokens leaves attention little to mix (a 32 px image in 16 px patches is 4 tokens).
PATCH_SIZES = (16, 8, 4, 2)
MIN_PATCHES_PER_SIDE = 8


@dataclass(frozen=True)
class ViTSize:
    """Width, depth and heads of a ViT; the MLP is 4x the width, as in ViT and DeiT."""

    hidden_dim: int
    num_layers: int
    num_heads: int


# DeiT's tiny/small/base (Touvron et al. 2021, table 1) and ViT-Large (Dosovitskiy et al. 2021), under
# the names solo-learn gives them.
# vit_micro is not a research backbone: like tiny_resnet it lets tests train a ViT on CPU in seconds.
VIT_SIZES = {
    "vit_micro": ViTSize(hidden_dim=32, num_layers=2, num_heads=2),
    "vit_tiny": ViTSize(hidden_dim=192, num_layers=12, num_heads=3),
    "vit_small": ViTSize(hidden_dim=384, num_layers=12, num_heads=6),
    "vit_base": ViTSize(hidden_dim=768, num_layers=12, num_heads=12),
    "vit_large": ViTSize(hidden_dim=1024, num_layers=24, num_heads=16),
}

# torchvision ViTs take the image size as an argument; their patch size is part of the name.
_TORCHVISION_SIZED_MODELS = ("vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14")


class TinyResNet(nn.Module):
    """A 4-stage ResNet with one BasicBlock per stage and widths 16-128 (about 0.3 M parameters).

    Not a research backbone: it exists so installs, tests and the CPU smoke config can run a real
    training loop in seconds. It keeps torchvision's attribute names (conv1, maxpool, fc) so the same
    stem and head surgery applies as for resnet18/50.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages = []
        in_width = widths[0]
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            downsample = None
            if stride != 1 or in_width != width:
                downsample = nn.Sequential(
                    nn.Conv2d(in_width, width, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(width),
                )
            stages.append(BasicBlock(in_width, width, stride=stride, downsample=downsample))
            in_width = width
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_width, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(x.flatten(1))


_PROJECT_BACKBONES = {"tiny_resnet": TinyResNet}


@dataclass(frozen=True)
class Constructor:
    """`function(*args, **kwargs)` builds the architecture, classifier included; JSON-serialisable."""

    function: str  # importable dotted path, e.g. "torchvision.models.get_model"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> nn.Module:
        module_path, _, attribute = self.function.rpartition(".")
        return getattr(importlib.import_module(module_path), attribute)(*self.args, **self.kwargs)


def default_patch_size(image_size: int) -> int:
    """16 px patches at 224, 8 px at 96, 4 px at 32, 2 px at 16: see PATCH_SIZES."""
    for patch_size in PATCH_SIZES:
        if image_size % patch_size == 0 and image_size // patch_size >= MIN_PATCHES_PER_SIDE:
            return patch_size
    raise ValueError(
        f"No ViT patch size in {PATCH_SIZES} divides the image size {image_size} into at least "
        f"{MIN_PATCHES_PER_SIDE} patches per side; pass --model.patch_size (a divisor of {image_size})."
    )


def _torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _timm_or_none() -> ModuleType | None:
    """timm when installed; None otherwise (suggestions then skip its names)."""
    try:
        import timm
    except ImportError:
        return None
    return timm


def _timm_names() -> list[str]:
    timm = _timm_or_none()
    return timm.list_models() if timm is not None else []


def available_backbones() -> list[str]:
    """Every torchvision and project name `build_backbone` accepts; timm's are `timm/<any timm name>`."""
    return sorted(_torchvision_names()) + sorted([*_PROJECT_BACKBONES, *VIT_SIZES])


def _unknown_backbone(name: str) -> ValueError:
    """One line, with the closest names of both libraries."""
    bare = name.removeprefix(TIMM_PREFIX)
    close = difflib.get_close_matches(bare, available_backbones(), n=3)
    close += [TIMM_PREFIX + match for match in difflib.get_close_matches(bare, _timm_names(), n=3)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(
        f"Unknown backbone '{name}' (--model.backbone).{hint} Use a torchvision classification model "
        "(resnet18, resnet50), a ViT (vit_tiny, vit_small, vit_base), timm/<timm model name>, or "
        "tiny_resnet for smoke tests."
    )


def _timm_constructor(name: str, image_size: int, patch_size: int | None) -> Constructor:
    timm = _timm_or_none()
    if timm is None:
        # A ValueError, like every other bad --model.backbone: the CLI reports it as one line.
        raise ValueError(
            f"--model.backbone {TIMM_PREFIX}{name} needs timm, which is not installed: "
            f"pip install {TIMM_PIN} (it is in requirements.txt)."
        )
    if not timm.is_model(name):
        raise _unknown_backbone(TIMM_PREFIX + name)
    # num_classes=0 makes timm build the model without a classifier; nothing is downloaded.
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
    config = timm.models.get_pretrained_cfg(name)
    # Models that need one input size (ViTs, Swin, ...) are built for this one; the others take any.
    if config is not None and config.fixed_input_size:
        kwargs["img_size"] = image_size
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    return Constructor("timm.create_model", (name,), kwargs)


def backbone_constructor(name: str, image_size: int, patch_size: int | None = None) -> Constructor:
    """The call that builds backbone `name` for images of `image_size` px (classifier still attached)."""
    if name.startswith(TIMM_PREFIX):
        return _timm_constructor(name.removeprefix(TIMM_PREFIX), image_size, patch_size)
    if name in VIT_SIZES:
        size = VIT_SIZES[name]
        return Constructor(
            "torchvision.models.vision_transformer.VisionTransformer",
            kwargs={
                "image_size": image_size,
                "patch_size": patch_size or default_patch_size(image_size),
                "num_layers": size.num_layers,
                "num_heads": size.num_heads,
                "hidden_dim": size.hidden_dim,
                "mlp_dim": 4 * size.hidden_dim,
            },
        )
    if patch_size is not None:
        raise ValueError(
            f"--model.patch_size applies to ViTs (vit_tiny, vit_small, vit_base, timm ViTs), not to "
            f"'{name}'; torchvision's vit_b_16 etc. take the patch size from their name."
        )
    if name in _PROJECT_BACKBONES:
        return Constructor(f"{__name__}.{_PROJECT_BACKBONES[name].__name__}")
    if name not in _torchvision_names():
        raise _unknown_backbone(name)
    # Randomly initialised on purpose: self-supervised pretraining starts from scratch, and no
    # weights are downloaded.
    kwargs: dict[str, Any] = {"weights": None}
    if name in _TORCHVISION_SIZED_MODELS:
        kwargs["image_size"] = image_size
    return Constructor("torchvision.models.get_model", (name,), kwargs)


def supports_cifar_stem(model: nn.Module) -> bool:
    return isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool")


def apply_cifar_stem(model: nn.Module) -> None:
    """3x3 stride-1 first convolution and no max-pool, as the SimCLR paper does for CIFAR-10."""
    old = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def remove_head(model: nn.Module, name: str) -> tuple[str | None, int]:
    """Replace the classifier with Identity; return its attribute and the width of what it consumed.

    timm models are built without one (num_classes=0) and report their feature width themselves
    (head_hidden_size: after any pre-logits layer; the attribute is None).
    """
    if name.startswith(TIMM_PREFIX):
        return None, getattr(model, "head_hidden_size", None) or model.num_features
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Module):
            linear = head if isinstance(head, nn.Linear) else next(
                (m for m in head.modules() if isinstance(m, nn.Linear)), None
            )
            if linear is not None:
                setattr(model, attribute, nn.Identity())
                return attribute, linear.in_features
    raise ValueError(
        f"Backbone '{name}' has no linear classifier under {', '.join(HEAD_ATTRIBUTES)}; "
        "SimCLR needs one to strip. Choose a classification model such as resnet18 or resnet50."
    )


def benefits_from_channels_last(encoder: nn.Module) -> bool:
    """Channels-last speeds up convolutions; a ViT's only one is its patch embedding, so it gains nothing."""
    return sum(isinstance(module, nn.Conv2d) for module in encoder.modules()) > 1


@dataclass(frozen=True)
class BackboneRecipe:
    """How an encoder is made: call `constructor`, swap in the CIFAR stem if `cifar_stem`, then set the
    attribute `head` (None: built without one) to Identity. Representations are [B, feature_dim]."""

    constructor: Constructor
    cifar_stem: bool
    head: str | None
    feature_dim: int

    def build(self) -> nn.Module:
        model = self.constructor()
        if self.cifar_stem:
            apply_cifar_stem(model)
        if self.head is not None:
            setattr(model, self.head, nn.Identity())
        return model


def build_backbone_and_recipe(
    name: str, image_size: int, cifar_stem: bool | None = None, patch_size: int | None = None
) -> tuple[nn.Module, BackboneRecipe]:
    """The encoder and the recipe that rebuilds its architecture (see build_backbone)."""
    constructor = backbone_constructor(name, image_size, patch_size)
    model = constructor()
    use_cifar_stem = image_size <= SMALL_IMAGE_MAX_SIZE if cifar_stem is None else cifar_stem
    stem_applied = use_cifar_stem and supports_cifar_stem(model)
    if stem_applied:
        apply_cifar_stem(model)
    elif cifar_stem:
        raise ValueError(
            f"--model.cifar_stem true needs a ResNet-style stem (conv1 + maxpool); '{name}' has none. "
            "Use a ResNet backbone or leave cifar_stem unset."
        )
    head, feature_dim = remove_head(model, name)
    return model, BackboneRecipe(constructor, stem_applied, head, feature_dim)


def build_backbone(
    name: str, image_size: int, cifar_stem: bool | None = None, patch_size: int | None = None
) -> tuple[nn.Module, int]:
    """Return (encoder, feature_dim): `encoder(images)` gives [B, feature_dim] representations.

    cifar_stem=None picks the CIFAR stem for images of SMALL_IMAGE_MAX_SIZE px or less, on models
    that have a ResNet-style stem (conv1 + maxpool); True forces it, False keeps the original stem.
    patch_size=None picks a ViT's patch size from the image size (default_patch_size).

    A ViT's representation is its class token after the final LayerNorm, as torchvision's and timm's
    ViTs compute it and as MoCo v3 (Chen et al. 2021), DINO and solo-learn use it; so an exported
    encoder is the plain library model with its head removed, no pooling code of ours needed.
    """
    model, recipe = build_backbone_and_recipe(name, image_size, cifar_stem, patch_size)
    return model, recipe.feature_dim
