"""Crops of images of different sizes, each resized as torchvision's antialiased crop-then-resize does.

Images of any size are trained at their own size, so a crop is often larger than the view: a 500 px
photo's full-frame crop at 224 px is 2.2 times the output, a 4x downscale is common at 96 px. Resized
bilinearly without antialiasing (`views.resample`, fine up to 2x) such crops alias; Pillow and
torchvision (`resized_crop(..., antialias=True)`) widen the bilinear (triangle) filter to the
downscale instead, so every source pixel counts. This module computes exactly that filter, for every
view of a batch at once, with a fixed number of kernels whatever the number and sizes of the images:

- the images are packed into one flat uint8 buffer (one `cat`, no padding);
- first down the columns: each output row of a view is a weighted sum of at most K source rows, K set
  by the largest downscale the batch's image sizes allow (known on the host). A source row is read as a
  window of the flat buffer (`as_strided`: the row and what follows it, as wide as the widest image),
  so one `index_select` per tap reads that tap's rows of every view and channel;
- then along the rows: one `gather` per tap.
Taps outside a view's box get no weight, as when the crop is cut out first; taps outside the image
(the probe view's zero-padded crop) read zero. Both passes equal torchvision's to float rounding
(tests/views/test_filtered_crops.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedImages:
    """uint8 images [3, H_n, W_n] of any sizes in one flat buffer, followed by `max_width` zeros."""

    flat: Tensor  # [sum 3 H_n W_n + max_width] uint8
    offsets: Tensor  # [B] long: where image n starts in `flat`
    heights: Tensor  # [B] long
    widths: Tensor  # [B] long
    max_height: int
    max_width: int


def pack_images(images: Sequence[Tensor], geometry: Tensor) -> PackedImages:
    """`images` [3, H_n, W_n] uint8 and their `geometry`: [B, 3] long on their device, (offset in the
    flat buffer, H_n, W_n) per image, as `image_geometry` lists them. nvJPEG's planar images join the
    buffer as they are; libjpeg-turbo's (CPU) are channels-last and are copied once, one by one."""
    max_height = max(image.shape[1] for image in images)
    max_width = max(image.shape[2] for image in images)
    tail = images[0].new_zeros(max_width)  # a window starting in the last row must not run off the end
    flat = torch.cat([*(image.reshape(-1) for image in images), tail])
    offsets, heights, widths = geometry.unbind(dim=1)
    return PackedImages(flat, offsets, heights, widths, max_height, max_width)


def image_geometry(images: Sequence[Tensor]) -> list[tuple[int, int, int]]:
    """(offset in the packed buffer, height, width) of each image, from shapes known on the host."""
    rows, offset = [], 0
    for image in images:
        _, height, width = image.shape
        rows.append((offset, height, width))
        offset += image.numel()
    return rows


def taps_needed(longest_side: int, size: int) -> int:
    """Source pixels one output pixel can read along a side: the filter spans 2 x max(1, downscale)
    pixels, and a crop is at most the image, so `longest_side / size` bounds the downscale."""
    support = max(1.0, longest_side / size)
    return math.floor(2 * support) + 1


def filter_taps(
    start: Tensor,
    length: Tensor,
    readable: tuple[Tensor, Tensor],
    size: int,
    taps: int,
    flip: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Source pixels [V, size, taps] (long, clamped into the readable span) and their weights (float,
    summing to 1 over the box) that resample each span [start, start + length) onto `size` output pixels,
    mirrored where `flip`; pixels outside the `readable` span [first, end) read zero.

    Pillow's resampling (which torchvision's antialiased interpolation follows): output pixel i has its
    centre at start + (i + 0.5) * scale, scale = length / size; the triangle filter is widened to
    support = max(1, scale) and reads the pixels p whose centres p + 0.5 lie within it, with weight
    1 - |p + 0.5 - centre| / support, restricted to the box and normalised there. A pixel outside the
    readable span (a box reaching past the image) keeps its share of the weight but reads zero.
    """
    scale = length / size
    support = scale.clamp(min=1.0)[:, None]
    positions = torch.arange(size, device=start.device, dtype=torch.float32) + 0.5
    if flip is not None:
        positions = torch.where(flip[:, None], size - positions, positions)
    centre = torch.addcmul(start[:, None], positions, scale[:, None])  # [V, size]
    first = torch.maximum(torch.floor(centre - support + 0.5), torch.floor(start)[:, None])
    end = torch.minimum(torch.floor(centre + support + 0.5), torch.ceil(start + length)[:, None])
    pixels = first[:, :, None] + torch.arange(taps, device=start.device, dtype=torch.float32)
    weights = (1.0 - (pixels + 0.5 - centre[:, :, None]).abs() / support[:, :, None]).clamp_(min=0.0)
    weights = torch.where(pixels < end[:, :, None], weights, 0.0)
    weights = weights / weights.sum(dim=2, keepdim=True)
    first_readable, end_readable = (edge.to(pixels.dtype)[:, None, None] for edge in readable)
    weights = torch.where((pixels >= first_readable) & (pixels < end_readable), weights, 0.0)
    pixels = torch.minimum(torch.maximum(pixels, first_readable), end_readable - 1)
    return pixels.long(), weights


def filtered_crops(
    packed: PackedImages,
    image_index: Tensor,
    boxes: Tensor,
    flip: Tensor,
    size: int,
    regions: Tensor | None = None,
) -> Tensor:
    """Views [V, 3, size, size] in [0, 1] (float): view v is image `image_index[v]` cropped to its box
    (top, left, height, width in that image's pixels), resized with the antialiased filter and mirrored
    where `flip` [V]. A view reads only its image's pixels inside its `regions` box (default: the whole
    image; whole pixels, within the image), zero elsewhere."""
    views = image_index.shape[0]
    heights, widths = packed.heights[image_index], packed.widths[image_index]
    if regions is None:
        zeros = torch.zeros_like(heights)
        region_top, region_left, region_bottom, region_right = zeros, zeros, heights, widths
    else:
        region_top, region_left, region_height, region_width = regions.long().unbind(dim=1)
        region_bottom, region_right = region_top + region_height, region_left + region_width
    top, left, box_height, box_width = boxes.to(torch.float32).unbind(dim=1)
    rows, row_weights = filter_taps(
        top, box_height, (region_top, region_bottom), size, taps_needed(packed.max_height, size)
    )
    columns, column_weights = filter_taps(
        left, box_width, (region_left, region_right), size, taps_needed(packed.max_width, size), flip
    )
    row_weights = row_weights * (1.0 / 255.0)  # uint8 in, [0, 1] out
    # Where row y of channel c of the view's image starts in the flat buffer: [V, 3, size, taps].
    channel_starts = (
        packed.offsets[image_index][:, None]
        + torch.arange(3, device=boxes.device) * (heights * widths)[:, None]
    )
    starts = channel_starts[:, :, None, None] + (rows * widths[:, None, None])[:, None]
    width = packed.max_width
    windows = packed.flat.as_strided((packed.flat.numel() - width + 1, width), (1, 1))
    # The first pass holds [views, 3, size, widest image] floats: in chunks of views, within a budget.
    chunk = max(1, intermediate_budget(boxes.device) // (3 * size * width))
    if chunk >= views:
        return _two_passes(windows, starts, row_weights, columns, column_weights)
    parts = [
        _two_passes(
            windows, *(part[first : first + chunk] for part in (starts, row_weights, columns, column_weights))
        )
        for first in range(0, views, chunk)
    ]
    return torch.cat(parts)


def intermediate_budget(device: torch.device) -> int:
    """Elements of the first pass's intermediate at once. 1 GiB of floats on an accelerator: a batch of
    256 ImageNet-size images at 224 px stays one pass, no more kernels. 4 MiB on a CPU, where a few views
    at a time stay in cache: 2.4x the views/s of 128 MiB chunks (183 against 75 views/s of this filter,
    64 views of 300-600 px at 224 px, one thread, median of 9 interleaved rounds, load 14)."""
    return 2**28 if device.type != "cpu" else 2**20


def _two_passes(
    windows: Tensor, starts: Tensor, row_weights: Tensor, columns: Tensor, column_weights: Tensor
) -> Tensor:
    """Down the columns (one row gather per tap), then along the rows (one gather per tap)."""
    views, _, size, taps = starts.shape
    width = windows.shape[1]
    down = torch.zeros(views, 3, size, width, device=starts.device)
    for tap in range(taps):
        source_rows = windows.index_select(0, starts[..., tap].reshape(-1)).view(views, 3, size, width)
        down.addcmul_(source_rows, row_weights[:, None, :, tap, None])
    out = torch.zeros(views, 3, size, size, device=starts.device)
    for tap in range(columns.shape[-1]):
        index = columns[:, None, None, :, tap].expand(views, 3, size, size)
        out.addcmul_(down.gather(3, index), column_weights[:, None, None, :, tap])
    return out
