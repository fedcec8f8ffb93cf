"""Checks of the built model against the data, made before training starts."""

from __future__ import annotations

import torch
from torch import nn

from reliability.errors import UserError
from views.multicrop import MultiCrop


def check_encoder_takes(
    encoder: nn.Module,
    image_size: int,
    backbone: str,
    fix: str = "Choose a --data.image_size it accepts or another --model.backbone.",
) -> None:
    """One zero image through the encoder: a backbone that cannot take the image size fails here in one
    line (e.g. torchvision's vit_b_16 asserts 224 px), not inside the first training step. `fix` ends
    the message: what to change."""
    parameter = next(encoder.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = encoder.training
    encoder.eval()  # no batch-norm statistics change
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, 3, image_size, image_size, device=device))
    except (AssertionError, RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"Backbone '{backbone}' cannot take {image_size} px images ({reason[:200]}). {fix}"
        ) from error
    finally:
        encoder.train(was_training)


def check_encoder_takes_small_views(encoder: nn.Module, multi_crop: MultiCrop | None, backbone: str) -> None:
    """Multi-crop needs the encoder to take a second input size; this project's ViTs take one."""
    if multi_crop is not None:
        check_encoder_takes(
            encoder,
            multi_crop.size,
            backbone,
            f"The small views of --data.num_small_views {multi_crop.count} need an encoder that takes a "
            "second input size (ResNets do): set another --data.small_view_size or --model.backbone, or "
            "--data.num_small_views 0.",
        )
