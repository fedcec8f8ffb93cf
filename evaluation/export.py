"""The pretrained encoder as a plain torchvision state_dict, usable without this project.

SimCLR's encoder is a torchvision model whose classifier was replaced by Identity, so its state_dict
is the torchvision model's minus the classifier's keys (``fc.*`` for ResNets). Small-image encoders
also have the CIFAR stem (3x3 stride-1 conv1, no max-pool), which `torchvision_encoder` rebuilds.
Loading elsewhere, without this project::

    model = torchvision.models.resnet18()
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)   # only when "cifar_stem" is true
    model.maxpool = torch.nn.Identity()                         # only when "cifar_stem" is true
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load("encoder.pt"))            # strict: every key matches
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from lightning_modules.backbones import apply_cifar_stem, supports_cifar_stem
from lightning_modules.simclr import SimCLR

HEAD_ATTRIBUTES = ("fc", "classifier", "heads", "head")


def has_cifar_stem(encoder: nn.Module) -> bool:
    return supports_cifar_stem(encoder) and isinstance(encoder.maxpool, nn.Identity)


def exportable_state_dict(module: SimCLR) -> dict[str, torch.Tensor]:
    """The encoder's tensors on the CPU, under torchvision's key names."""
    name = module.hparams.backbone
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"Backbone '{name}' is not a torchvision model, so there is no torchvision.models.{name}() "
            "to load an export into. Export works for encoders pretrained with a torchvision backbone "
            "(e.g. resnet18)."
        )
    return {key: tensor.detach().cpu().clone() for key, tensor in module.encoder.state_dict().items()}


def torchvision_encoder(name: str, state_dict: dict[str, torch.Tensor], cifar_stem: bool) -> nn.Module:
    """torchvision.models.<name>() with the exported weights, its classifier replaced by Identity.

    Raises when any key other than the classifier's is missing or unexpected, so a mismatched
    architecture or stem cannot load silently.
    """
    model = torchvision.models.get_model(name, weights=None)
    if cifar_stem:
        apply_cifar_stem(model)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing_non_head = [key for key in missing if key.split(".")[0] not in HEAD_ATTRIBUTES]
    if missing_non_head or unexpected:
        raise ValueError(
            f"The state_dict does not fit torchvision.models.{name}() with cifar_stem={cifar_stem}: "
            f"missing {missing_non_head}, unexpected {unexpected}. Check the backbone name and the stem "
            "recorded in encoder.json."
        )
    for attribute in HEAD_ATTRIBUTES:
        if isinstance(getattr(model, attribute, None), nn.Module):
            setattr(model, attribute, nn.Identity())
            break
    return model


def load_exported_encoder(folder: str | Path) -> nn.Module:
    """Rebuild an encoder from an export folder (encoder.pt + encoder.json)."""
    import json

    folder = Path(folder)
    meta = json.loads((folder / "encoder.json").read_text())
    state_dict = torch.load(folder / "encoder.pt", map_location="cpu", weights_only=True)
    return torchvision_encoder(meta["backbone"], state_dict, meta["cifar_stem"])
