"""SimCLR with a ViT encoder: what differs from a ResNet (weight decay groups, memory format)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lightning_modules.optim import parameter_groups
from lightning_modules.simclr import SimCLR


def test_vit_position_embedding_class_token_norms_and_biases_are_not_decayed() -> None:
    module = SimCLR(backbone="vit_micro", image_size=32)
    decayed, exempt = parameter_groups(module, weight_decay=0.1)
    names = {id(p): name for name, p in module.named_parameters()}
    exempt_names = {names[id(p)] for p in exempt["params"]}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    for name in ("class_token", "encoder.pos_embedding", "encoder.ln.weight", "conv_proj.bias"):
        assert f"encoder.{name}" in exempt_names
    assert "encoder.encoder.layers.encoder_layer_0.ln_1.bias" in exempt_names
    # Every matrix of the attention and MLP blocks and the patch embedding is decayed.
    assert "encoder.conv_proj.weight" in decayed_names
    assert "encoder.encoder.layers.encoder_layer_1.mlp.3.weight" in decayed_names
    assert all(p.ndim >= 2 for p in decayed["params"])
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0


@pytest.mark.parametrize(("backbone", "expected"), [("tiny_resnet", True), ("vit_micro", False)])
def test_channels_last_is_chosen_on_cuda_for_convolutional_encoders_only(
    backbone: str, expected: bool
) -> None:
    module = SimCLR(backbone=backbone, image_size=32)
    # setup() only reads the strategy's device; the layout change itself runs on the CPU.
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda")))
    module.setup("fit")
    assert module.uses_channels_last is expected


def test_vit_trains_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    module = SimCLR(backbone="vit_micro", image_size=32, batch_size=4)
    views = torch.randn(2, 4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, targets = module.contrastive_logits(views[0], views[1])
        loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and module.encoder.class_token.grad.abs().sum() > 0
