"""Encoders f(.) for SimCLR: torchvision classification models with their classifier removed."""

from __future__ import annotations

import difflib

import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

# Images up to this side get the CIFAR stem: a 7x7 stride-2 conv and a max-pool would shrink a
# 32 px image to 8 px before the first residual block and throw away most of its detail.
SMALL_IMAGE_MAX_SIZE = 64

# Attribute names under which torchvision models keep their classification head.
_HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")


class TinyResNet(nn.Module):
    """A 4-stage ResNet with one BasicBlock per stage and widths 16-128 (about 0.7 M parameters).

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


def available_backbones() -> list[str]:
    """Every name `build_backbone` accepts: torchvision's classification models plus this project's."""
    return sorted(torchvision.models.list_models(module=torchvision.models)) + sorted(_PROJECT_BACKBONES)


def _instantiate(name: str) -> nn.Module:
    if name in _PROJECT_BACKBONES:
        return _PROJECT_BACKBONES[name]()
    if name not in torchvision.models.list_models(module=torchvision.models):
        close = difflib.get_close_matches(name, available_backbones(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown backbone '{name}' (--model.backbone).{hint} Any torchvision classification model "
            "name works, e.g. resnet18, resnet50, wide_resnet50_2; or tiny_resnet for smoke tests."
        )
    # Randomly initialised on purpose: self-supervised pretraining starts from scratch, and no
    # weights are downloaded.
    return torchvision.models.get_model(name, weights=None)


def supports_cifar_stem(model: nn.Module) -> bool:
    return isinstance(getattr(model, "conv1", None), nn.Conv2d) and hasattr(model, "maxpool")


def apply_cifar_stem(model: nn.Module) -> None:
    """3x3 stride-1 first convolution and no max-pool, as the SimCLR paper does for CIFAR-10."""
    old = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def _remove_head(model: nn.Module, name: str) -> int:
    """Replace the classifier with identity and return the width of the features it consumed."""
    for attribute in _HEAD_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if isinstance(head, nn.Module):
            linear = head if isinstance(head, nn.Linear) else next(
                (m for m in head.modules() if isinstance(m, nn.Linear)), None
            )
            if linear is not None:
                setattr(model, attribute, nn.Identity())
                return linear.in_features
    raise ValueError(
        f"Backbone '{name}' has no linear classifier under {', '.join(_HEAD_ATTRIBUTES)}; "
        "SimCLR needs one to strip. Choose a classification model such as resnet18 or resnet50."
    )


def build_backbone(name: str, image_size: int, cifar_stem: bool | None = None) -> tuple[nn.Module, int]:
    """Return (encoder, feature_dim): `encoder(images)` gives [B, feature_dim] representations.

    cifar_stem=None picks the CIFAR stem for images of SMALL_IMAGE_MAX_SIZE px or less, on models
    that have a ResNet-style stem (conv1 + maxpool); True forces it, False keeps the original stem.
    """
    model = _instantiate(name)
    use_cifar_stem = image_size <= SMALL_IMAGE_MAX_SIZE if cifar_stem is None else cifar_stem
    if use_cifar_stem:
        if supports_cifar_stem(model):
            apply_cifar_stem(model)
        elif cifar_stem:
            raise ValueError(
                f"--model.cifar_stem true needs a ResNet-style stem (conv1 + maxpool); '{name}' has none. "
                "Use a ResNet backbone or leave cifar_stem unset."
            )
    feature_dim = _remove_head(model, name)
    return model, feature_dim
