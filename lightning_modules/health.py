"""Representation health without labels: effective rank, alignment and uniformity, as pure functions.

- RankMe (Garrido et al. 2023, "RankMe: Assessing the downstream performance of pretrained
  self-supervised representations by their rank"): the effective rank of a matrix of embeddings,
  exp of the entropy of its normalised singular values. It tracks downstream accuracy without labels
  and falls when the representation collapses onto fewer directions.
- Alignment and uniformity (Wang & Isola 2020, "Understanding contrastive representation learning
  through alignment and uniformity on the hypersphere"): the two halves the contrastive loss
  optimises as the number of negatives grows. Alignment is how close the two views of an image land
  (lower is better, 0 to 4); uniformity how evenly the images spread over the sphere (lower is better,
  from 0 when all coincide down to about -4 for t = 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# RankMe's epsilon, added to every normalised singular value (Garrido et al. 2023, eq. 1).
RANKME_EPS = 1e-7
# Wang & Isola's defaults: alignment with alpha = 2, uniformity with t = 2.
UNIFORMITY_T = 2.0


def rankme(singular_values: Tensor, eps: float = RANKME_EPS) -> Tensor:
    """exp(-sum_k p_k log p_k) with p_k = sigma_k / ||sigma||_1 + eps, of the singular values [K]."""
    probabilities = singular_values / singular_values.sum().clamp(min=torch.finfo(singular_values.dtype).tiny)
    probabilities = probabilities + eps
    return torch.exp(-(probabilities * probabilities.log()).sum())


def gram_singular_values(gram: Tensor, count: int) -> Tensor:
    """The singular values of an [N, D] matrix H from its Gram matrix H^T H [D, D] and N.

    The Gram matrix adds up over batches and devices (a sum of H_b^T H_b), so the embeddings themselves
    never have to be kept or gathered. Returns min(N, D) values, largest first, as svdvals(H) would: its
    eigenvalues are the squared singular values (float64 keeps them to about 1e-8 of the largest).
    NaNs where H holds a non-finite value (a diverged run), which the eigensolver would fail on.
    """
    values = min(count, gram.shape[0])
    if not torch.isfinite(gram).all():
        return torch.full((values,), float("nan"), dtype=torch.float64, device=gram.device)
    eigenvalues = torch.linalg.eigvalsh(gram.double()).flip(0)[:values]
    return eigenvalues.clamp(min=0).sqrt()


def alignment(z1: Tensor, z2: Tensor) -> Tensor:
    """E ||f(x) - f(y)||^2 over the positive pairs (rows of z1 and z2, [N, D]), on the unit sphere."""
    with torch.autocast(device_type=z1.device.type, enabled=False):
        a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        return (a - b).pow(2).sum(dim=1).mean()


def uniformity(z: Tensor, t: float = UNIFORMITY_T) -> Tensor:
    """log E exp(-t ||f(x) - f(y)||^2) over the distinct pairs of the rows of z [N, D], on the sphere.

    Computed as a log-sum-exp, so it stays finite where every pair is far apart; NaN for a single row.
    """
    if z.shape[0] < 2:
        return torch.full((), float("nan"), device=z.device)
    with torch.autocast(device_type=z.device.type, enabled=False):
        distances = torch.pdist(F.normalize(z.float(), dim=1)).pow(2)
        return torch.logsumexp(-t * distances, dim=0) - math.log(distances.numel())
