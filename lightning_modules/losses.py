"""The NT-Xent (normalised temperature-scaled cross-entropy) loss of SimCLR, as pure functions.

Distributed training gathers the projections of every device *outside* these functions and passes
them in; the functions themselves never communicate, which keeps them testable on one CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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

    Anchor rows are z1 then z2; candidate columns are gathered_z1 then gathered_z2. The arithmetic runs
    in at least float32 with autocast off, because at temperature 0.01 bf16 logits lose the ordering
    of near-equal similarities (float64 inputs stay float64, for gradcheck).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; SimCLR uses 0.1-0.5.")
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be [N, D]; got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    if gathered_z1 is None or gathered_z2 is None:
        gathered_z1, gathered_z2 = z1, z2
    n, total = z1.shape[0], gathered_z1.shape[0]

    dtype = torch.promote_types(z1.dtype, torch.float32)
    with torch.autocast(device_type=z1.device.type, enabled=False):
        anchors = F.normalize(torch.cat([z1, z2]).to(dtype), dim=1)
        candidates = F.normalize(torch.cat([gathered_z1, gathered_z2]).to(dtype), dim=1)
        logits = anchors @ candidates.T / temperature

    local = torch.arange(n, device=z1.device) + rank * n
    self_columns = torch.cat([local, local + total])
    targets = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    logits[rows, self_columns] = float("-inf")
    return logits, targets


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
