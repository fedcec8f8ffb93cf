"""Linear evaluation: a linear classifier trained on frozen, precomputed encoder features.

Features are computed once, so training the classifier for many epochs costs seconds, not another
pass of the encoder over the data per epoch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evaluation.progress import shown


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    """Fraction of samples whose label is among the k highest scores (k capped at the class count)."""
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == labels.unsqueeze(1)).any(dim=1)
    return hits.float().mean().item()


def train_linear_classifier(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> nn.Linear:
    """Multinomial logistic regression by AdamW with a cosine schedule, on the CPU or features' device.

    The features are standardised inside the returned layer (its weights absorb the train mean and
    std), so one learning rate suits encoders whose feature scales differ by orders of magnitude.
    """
    generator = torch.Generator().manual_seed(seed)
    mean = features.mean(dim=0)
    std = features.std(dim=0).clamp(min=1e-6)
    standardised = (features - mean) / std
    layer = nn.Linear(features.shape[1], num_classes).to(features.device)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.01, generator=generator)
        layer.bias.zero_()
    optimizer = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-len(features) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in shown(range(epochs), "linear classifier epochs"):
        order = torch.randperm(len(features), generator=generator).to(features.device)
        for batch in order.split(batch_size):
            loss = F.cross_entropy(layer(standardised[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return _fold_standardisation(layer, mean, std)


def _fold_standardisation(layer: nn.Linear, mean: Tensor, std: Tensor) -> nn.Linear:
    """W((x - m) / s) + b = (W / s) x + (b - (W / s) m): one plain layer that takes raw features."""
    folded = nn.Linear(layer.in_features, layer.out_features).to(layer.weight.device)
    with torch.no_grad():
        weight = layer.weight / std
        folded.weight.copy_(weight)
        folded.bias.copy_(layer.bias - weight @ mean)
    return folded
