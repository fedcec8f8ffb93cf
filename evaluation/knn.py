"""Weighted k-nearest-neighbour classification of representations (Wu et al., 2018).

The standard cheap read-out of a self-supervised encoder: no training, so it measures the geometry
of the representation alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def knn_predict(
    bank_features: Tensor,
    bank_labels: Tensor,
    query_features: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> Tensor:
    """Class scores [Q, num_classes] for each query, by cosine similarity to a labelled feature bank.

    Shapes: bank_features [B, D], bank_labels [B] (int), query_features [Q, D]. Each of the k most
    similar bank samples votes for its class with weight exp(similarity / temperature). Queries are
    processed in chunks so a 50,000-sample bank never needs a [Q, B] matrix at once.
    """
    if bank_features.shape[0] != bank_labels.shape[0]:
        raise ValueError(
            f"bank_features has {bank_features.shape[0]} rows but bank_labels has {bank_labels.shape[0]}."
        )
    k = min(k, bank_features.shape[0])
    bank = F.normalize(bank_features.float(), dim=1)
    scores = []
    for queries in F.normalize(query_features.float(), dim=1).split(chunk_size):
        similarity, index = (queries @ bank.T).topk(k, dim=1)
        weights = (similarity / temperature).exp()
        votes = torch.zeros(queries.shape[0], num_classes, device=queries.device)
        votes.scatter_add_(1, bank_labels[index], weights)
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(
    bank_features: Tensor,
    bank_labels: Tensor,
    query_features: Tensor,
    query_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of knn_predict on labelled queries."""
    scores = knn_predict(bank_features, bank_labels, query_features, num_classes, k, temperature)
    return (scores.argmax(dim=1) == query_labels).float().mean().item()
