"""Fine-tuning the whole network (encoder + a new linear head) on a labelled subset.

As in the paper's semi-supervised protocol: SGD with Nesterov momentum, no weight decay by default,
random crop + flip only, a cosine schedule over the chosen number of epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from evaluation.data import loader
from evaluation.linear import topk_accuracy
from evaluation.models import EncoderClassifier
from evaluation.progress import shown


@dataclass(frozen=True)
class FinetuneSettings:
    """The fine-tuning recipe (`--finetune.*`); saved in results.json with every result.

    Args:
        epochs: passes over each labelled subset.
        batch_size: images per SGD step (the whole subset when it is smaller).
        base_lr: learning rate for a batch of 256, scaled linearly with the batch like pretraining's.
        momentum: Nesterov momentum of SGD.
        weight_decay: L2 penalty on all weights.
        num_workers: DataLoader worker processes that decode and augment the images.
        seed: seed of the subset draw, the head's initialisation and the data order.
    """

    epochs: int = 30
    batch_size: int = 256
    base_lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    num_workers: int = 2
    seed: int = 0


def finetune(
    model: EncoderClassifier, train: Dataset, settings: FinetuneSettings, device: torch.device
) -> list[float]:
    """Trains `model` in place on `train` ((image, label) pairs); returns the mean loss of each epoch."""
    torch.manual_seed(settings.seed)
    model.to(device).train()
    batches = DataLoader(
        train,
        batch_size=min(settings.batch_size, len(train)),  # type: ignore[arg-type]
        shuffle=True,
        num_workers=settings.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=settings.num_workers > 0,
    )
    lr = settings.base_lr * settings.batch_size / 256
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=settings.momentum,
        nesterov=True,
        weight_decay=settings.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs * len(batches))
    epoch_losses = []
    for _ in shown(range(settings.epochs), "fine-tuning epochs"):
        total, count = 0.0, 0
        for images, labels in batches:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(labels), count + len(labels)
        epoch_losses.append(total / count)
    return epoch_losses


@torch.no_grad()
def predict_logits(
    model: EncoderClassifier, data: Dataset, batch_size: int, num_workers: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Logits [N, C] and labels [N] of a labelled dataset, with the model in eval mode."""
    model.to(device).eval()
    logits, labels = [], []
    for images, batch_labels in shown(loader(data, batch_size, num_workers), "test predictions"):
        logits.append(model(images.to(device)).float().cpu())
        labels.append(torch.as_tensor(batch_labels))
    return torch.cat(logits), torch.cat(labels).long()


def accuracies(logits: Tensor, labels: Tensor) -> dict[str, float]:
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5)}
