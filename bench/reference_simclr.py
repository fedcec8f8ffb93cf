"""An independent SimCLR training step, the yardstick our module is held against.

Built from a peer library (lightly: its NT-Xent loss and its generic projection head) plus what lightly
has no equal of, written from the published definitions: LARS as MoCo v3 defines it (Chen, Xie & He
2021, moco-v3/optimizer.py) and the paper's schedule (linear warm-up, then the cosine decay of SimCLR's
official code, reaching zero just after the last step). One implementation serves both uses, so the
reference of the CPU learning curve (bench/learning_curve.py) is the very step that
tests/lightning_modules/test_reference_trajectory.py proves our module equal to. Like the paper's
official code (and unlike lightly's and solo-learn's examples) both views go through the encoder as one
batch of 2N, so batch norm sees both. The test also holds `--model.lars_trust_ratio bolts` against
lightly's own LARS, stepped after the same contrastive_backward.
"""

from __future__ import annotations

import math

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import ProjectionHead
from torch import Tensor, nn


def projection_head(feature_dim: int, projection_dim: int = 128) -> nn.Module:
    """lightly's head in SimCLR's 2-layer shape: Linear-BN-ReLU-Linear, hidden width = feature width."""
    hidden = (feature_dim, feature_dim, nn.BatchNorm1d(feature_dim), nn.ReLU())
    return ProjectionHead([hidden, (feature_dim, projection_dim, None, None)])


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up reaching `peak` at the last warm-up step, then tf.compat.v1.train.cosine_decay
    over the remaining steps (0-based `step`)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))


def moco_v3_lars_step(
    params: list[nn.Parameter], buffers: dict, lr: float, weight_decay: float, momentum: float
) -> None:
    """MoCo v3's LARS, trust coefficient 1e-3: weights get decay and the trust ratio
    1e-3 ||w|| / ||g + wd w||; 1-d parameters (biases, batch-norm gains) plain momentum SGD."""
    with torch.no_grad():
        for param in params:
            if param.grad is None:
                continue
            update = param.grad
            if param.ndim > 1:
                update = update.add(param, alpha=weight_decay)
                param_norm, update_norm = torch.norm(param), torch.norm(update)
                if param_norm > 0 and update_norm > 0:
                    update = update * (0.001 * param_norm / update_norm)
            buffer = buffers.get(param)
            buffers[param] = update.clone() if buffer is None else buffer.mul_(momentum).add_(update)
            param.add_(buffers[param], alpha=-lr)


def contrastive_backward(network: nn.Module, criterion: NTXentLoss, view1: Tensor, view2: Tensor) -> Tensor:
    """Loss of `network` (encoder then head) on a batch of view pairs [N, C, H, W] each, and its
    gradients in the parameters' .grad, ready for any optimiser's step; the detached loss."""
    z1, z2 = network(torch.cat([view1, view2])).chunk(2)
    loss = criterion(z1, z2)
    network.zero_grad(set_to_none=True)
    loss.backward()
    return loss.detach()


def training_step(
    network: nn.Module,
    criterion: NTXentLoss,
    view1: Tensor,
    view2: Tensor,
    buffers: dict,
    lr: float,
    weight_decay: float,
    momentum: float,
) -> Tensor:
    """One step of `network` on a batch of view pairs with MoCo v3's LARS; the loss."""
    loss = contrastive_backward(network, criterion, view1, view2)
    params = [param for param in network.parameters() if param.requires_grad]
    moco_v3_lars_step([p for p in params if p.ndim > 1], buffers, lr, weight_decay, momentum)
    moco_v3_lars_step([p for p in params if p.ndim <= 1], buffers, lr, 0.0, momentum)
    return loss
