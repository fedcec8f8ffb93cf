"""The NT-Xent (normalised temperature-scaled cross-entropy) loss of SimCLR, as pure functions.

Distributed training gathers the projections of every device *outside* these functions and passes
them in; the functions themselves never communicate, which keeps them testable on one CPU.

Two views per image is the paper's loss (`nt_xent_logits`, `nt_xent_loss`). More views per image
(multi-crop: two large views plus small ones, Caron et al. 2020) use `multi_view_logits` and
`multi_view_nt_xent_loss`, which reduce to the two-view loss when there are two views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def multi_view_logits(
    views: Tensor, temperature: float, gathered_views: Tensor | None = None, rank: int = 0
) -> tuple[Tensor, Tensor]:
    """Similarity logits of this device's anchors against every candidate, and each anchor's positives.

    Shapes, with V views of each of N images on this device and M = world_size * N images over all
    devices:
        views:           [V, N, D]    projections; views[v, i] is view v of image i.
        gathered_views:  [V, M, D]    the same from every device, images in rank order, so this device's
                                      images sit at [rank * N, (rank + 1) * N). None means one device.
        returns logits:  [V*N, V*M]   float32 (or float64); anchor rows and candidate columns are
                                      view-major (view 0 of every image, then view 1, ...); each anchor's
                                      similarity to itself is -inf.
                positives: [V*N, V-1] the columns of each anchor's other V - 1 views of the same image,
                                      in view order.

    The arithmetic runs in at least float32 with autocast off, because at temperature 0.01 bf16 logits
    lose the ordering of near-equal similarities (float64 inputs stay float64, for gradcheck).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; SimCLR uses 0.1-0.5.")
    if views.dim() != 3 or views.shape[0] < 2:
        raise ValueError(f"views must be [V, N, D] with V >= 2 views; got {tuple(views.shape)}.")
    if gathered_views is None:
        gathered_views = views
    num_views, n, dim = views.shape
    total = gathered_views.shape[1]

    dtype = torch.promote_types(views.dtype, torch.float32)
    with torch.autocast(device_type=views.device.type, enabled=False):
        anchors = F.normalize(views.reshape(num_views * n, dim).to(dtype), dim=1)
        candidates = F.normalize(gathered_views.reshape(num_views * total, dim).to(dtype), dim=1)
        logits = anchors @ candidates.T / temperature

    # Column of view w of this device's image i: w * M + rank * N + i.
    images = torch.arange(n, device=views.device) + rank * n
    columns = images + total * torch.arange(num_views, device=views.device).unsqueeze(1)  # [V, N]
    rows = torch.arange(num_views * n, device=views.device)
    logits[rows, columns.reshape(-1)] = float("-inf")
    # Anchor (v, i): the columns of views w != v of image i, in view order: w = j + (j >= v), j < V - 1.
    # Arithmetic, not a boolean mask, whose indexing would make the host wait for the device.
    view = torch.arange(num_views, device=views.device).unsqueeze(1)
    j = torch.arange(num_views - 1, device=views.device)
    positives = columns[j + (j >= view).long()]  # [V, V-1, N]
    return logits, positives.permute(0, 2, 1).reshape(num_views * n, num_views - 1)


def multi_view_nt_xent_loss(logits: Tensor, positives: Tensor) -> Tensor:
    """Mean over every (anchor, positive) pair of -log(e^s_p / (e^s_p + sum over negatives e^s_k)).

    Shapes as :func:`multi_view_logits` returns them: logits [A, C] with the anchor's own column at -inf,
    positives [A, P] (P = V - 1). The negatives of an anchor are the views of every other image; its
    other positives are in neither the numerator nor the denominator of a pair's term. This is VISSL's
    multi-crop SimCLR loss (`MultiCropSimclrInfoNCECriterion`), which SwAV (Caron et al. 2020, Fig. 3)
    trained SimCLR with: the average of the two-view NT-Xent over every ordered pair of views of an
    image, all pairs sharing the negatives. With P = 1 it is the two-view NT-Xent exactly.
    """
    positive_logits = logits.gather(1, positives)
    negatives = logits.scatter(1, positives, float("-inf"))
    negative_logsumexp = torch.logsumexp(negatives, dim=1, keepdim=True)
    return (torch.logaddexp(positive_logits, negative_logsumexp) - positive_logits).mean()


def multi_view_positive_accuracy(logits: Tensor, positives: Tensor) -> Tensor:
    """How often a positive is more similar to its anchor than every negative, over all pairs (a scalar).

    With two views it is how often the positive is the anchor's nearest candidate. Shapes as in
    :func:`multi_view_nt_xent_loss`.
    """
    positive_logits = logits.gather(1, positives)
    hardest_negative = logits.scatter(1, positives, float("-inf")).amax(dim=1, keepdim=True)
    return (positive_logits > hardest_negative).float().mean()


def nt_xent_logits(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    gathered_z1: Tensor | None = None,
    gathered_z2: Tensor | None = None,
    rank: int = 0,
) -> tuple[Tensor, Tensor]:
    """Similarity logits of this device's anchors against every candidate, and the positive's column.

    Shapes, with N images on this device and M = world_size * N images over all devices:
        z1, z2:                     [N, D]   projections of the two views of the same N images.
        gathered_z1, gathered_z2:   [M, D]   the same from every device, concatenated in rank order, so
                                             this device's rows sit at [rank * N, (rank + 1) * N).
                                             None means one device (M = N).
        returns logits:             [2N, 2M] float32 (or float64); each anchor's similarity to itself is -inf.
                targets:            [2N]     column of each anchor's positive.

    Anchor rows are z1 then z2; candidate columns are gathered_z1 then gathered_z2 (the two-view case of
    :func:`multi_view_logits`).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be [N, D]; got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    gathered = None
    if gathered_z1 is not None and gathered_z2 is not None:
        gathered = torch.stack([gathered_z1, gathered_z2])
    logits, positives = multi_view_logits(torch.stack([z1, z2]), temperature, gathered, rank)
    return logits, positives.squeeze(1)


def nt_xent_loss(
    z1: Tensor,
    z2: Tensor,
    temperature: float,
    gathered_z1: Tensor | None = None,
    gathered_z2: Tensor | None = None,
    rank: int = 0,
) -> Tensor:
    """Mean NT-Xent loss over this device's 2N anchors (a scalar, float32).

    Each anchor's loss is the cross-entropy of its positive against the 2M - 2 negatives and the
    positive (the anchor itself masked out). Shapes and arguments as in :func:`nt_xent_logits`.
    """
    logits, targets = nt_xent_logits(z1, z2, temperature, gathered_z1, gathered_z2, rank)
    return F.cross_entropy(logits, targets)
