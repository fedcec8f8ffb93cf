"""The pretrained encoder as a plain state_dict plus encoder.json, the recipe that rebuilds it.

encoder.json records the call that builds the architecture (`constructor`: an importable function,
its `args` and `kwargs`), whether the CIFAR stem replaces conv1/maxpool (`cifar_stem`) and which
attribute held the classifier (`head`, set to Identity; null for timm models, built without one).
encoder.pt then loads strictly. For a ViT at 32 px, without this project::

    from torchvision.models.vision_transformer import VisionTransformer
    model = VisionTransformer(**meta["kwargs"])          # image_size=32, patch_size=4, ...
    model.heads = torch.nn.Identity()                    # meta["head"] == "heads"
    model.load_state_dict(torch.load("encoder.pt"))      # strict: every key matches

`load_exported_encoder(folder)` does this for any backbone; tiny_resnet's constructor is this
project's TinyResNet, every other one is torchvision's or timm's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_modules.backbones import BackboneRecipe, Constructor, build_backbone_and_recipe
from lightning_modules.simclr import SimCLR


def encoder_recipe(module: SimCLR) -> BackboneRecipe:
    """The recipe of the module's encoder, from its hyper-parameters (as training built it)."""
    hparams = module.hparams
    _, recipe = build_backbone_and_recipe(
        hparams.backbone, hparams.image_size, hparams.get("cifar_stem"), hparams.get("patch_size")
    )
    return recipe


def recipe_to_json(recipe: BackboneRecipe) -> dict[str, Any]:
    fields = asdict(recipe)
    constructor = fields.pop("constructor")
    return {
        "constructor": constructor["function"], "args": list(constructor["args"]),
        "kwargs": constructor["kwargs"], **fields,
    }


def recipe_from_json(meta: dict[str, Any]) -> BackboneRecipe:
    constructor = Constructor(meta["constructor"], tuple(meta["args"]), dict(meta["kwargs"]))
    return BackboneRecipe(constructor, meta["cifar_stem"], meta["head"], meta["feature_dim"])


def rebuild_encoder(recipe: BackboneRecipe, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """The recipe's model with the weights loaded strictly, so a mismatched recipe cannot load silently."""
    model = recipe.build()
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        first_line = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise ValueError(
            f"The exported weights do not fit {recipe.constructor.function}{recipe.constructor.args} with "
            f"{recipe.constructor.kwargs}, cifar_stem={recipe.cifar_stem}, head={recipe.head}: "
            f"{first_line} Check encoder.json against the checkpoint it came from."
        ) from error
    return model.eval()


def export_encoder(module: SimCLR) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(encoder.pt's tensors on the CPU, encoder.json's fields), checked to round-trip before return."""
    state_dict = {key: tensor.detach().cpu().clone() for key, tensor in module.encoder.state_dict().items()}
    recipe = encoder_recipe(module)
    rebuild_encoder(recipe, state_dict)
    meta = {
        "backbone": module.hparams.backbone,
        "image_size": module.hparams.image_size,
        **recipe_to_json(recipe),
    }
    return state_dict, meta


def load_exported_encoder(folder: str | Path) -> nn.Module:
    """Rebuild an encoder from an export folder (encoder.pt + encoder.json), in eval mode."""
    folder = Path(folder)
    meta = json.loads((folder / "encoder.json").read_text())
    state_dict = torch.load(folder / "encoder.pt", map_location="cpu", weights_only=True)
    return rebuild_encoder(recipe_from_json(meta), state_dict)
