"""Crop-and-resize of a batch in one `grid_sample`: each sample's box, bilinear, mirrored where flipped.

Bilinear taps are clamped to the crop box, so a view reads only pixels inside its box, as torchvision's
crop-then-resize does. Crops are not antialiased, which only matters when a crop is larger than the
output (e.g. a 96 px image trained at 64 px; never for CIFAR at 32 px or STL-10 at 96 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sampling_grid(boxes: Tensor, flip: Tensor, size: int, height: int, width: int) -> Tensor:
    """grid_sample's grid [n, size, size, 2] that crops each box, resizes it (bilinear) and mirrors it.

    Output pixel c of a box starting at `left` with width w reads source position
    left + (c + 0.5) * w / size - 0.5 (the pixel-centre convention of torchvision's resize), clamped to
    the centres of the box's first and last pixels: both bilinear taps then lie inside the box, as when
    torchvision crops first and resizes the crop, which clamps at the crop's border.
    """
    steps = (torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5) / size  # [size]
    top, left, box_h, box_w = boxes.to(torch.float32)[:, :, None].unbind(dim=1)  # each [n, 1]
    # Positions in "pixel index + 0.5" units, where pixel p spans [p, p + 1).
    x = torch.addcmul(left, torch.where(flip[:, None], 1.0 - steps, steps), box_w)  # [n, size]
    y = torch.addcmul(top, steps, box_h)
    x = torch.minimum(torch.maximum(x, left + 0.5), left + box_w - 0.5)
    y = torch.minimum(torch.maximum(y, top + 0.5), top + box_h - 0.5)
    # To grid_sample's [-1, 1] (align_corners=False: -1 and 1 are the outer edges of the image).
    grid_x = (x * (2.0 / width) - 1.0)[:, None, :].expand(-1, size, -1)
    grid_y = (y * (2.0 / height) - 1.0)[:, :, None].expand(-1, -1, size)
    return torch.stack([grid_x, grid_y], dim=-1)


def resample(images: Tensor, boxes: Tensor, flip: Tensor, size: int, padding_mode: str = "zeros") -> Tensor:
    """Each image [B, C, H, W] cropped to its box, resized to size x size (bilinear), mirrored where `flip`.

    Only pixels inside a box are read, so `padding_mode` matters only for boxes reaching outside the
    image (the probe's padded crop, which wants "zeros").
    """
    _, _, height, width = images.shape
    grid = sampling_grid(boxes, flip, size, height, width)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
