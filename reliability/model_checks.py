"""Checks of the built model against the data, made before training starts."""

from __future__ import annotations

import torch
from torch import nn

from reliability.errors import UserError


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
