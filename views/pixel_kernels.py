"""The per-image path's pixel work, compiled with numba: colour jitter, grayscale, blur, normalisation.

Why compiled: at 224 px on one core (bench/views.py --config imagefolder) Pillow's hue step, an HSV round
trip with a float division, an fmod and three round() calls per pixel, cost more than the crop, the
resize and the decode together, and no vectorised numpy or torch formulation of the same arithmetic was
faster than Pillow (measured: 3.7x and 1.5x slower). One compiled pass per operation is about 5x faster.

The jitter operations reproduce the arithmetic of torchvision's functions on PIL images, which the
peers' pipelines run, exactly: brightness, contrast and saturation are Pillow's `blend` in float32 against
black, the mean grey level or the grey image (Pillow's integer luma); hue is Pillow's HSV round trip,
through tables built with its float32/float64 arithmetic (`hue_tables`), so every one of the 16.7M
colours comes out as Pillow makes it (tests/views/test_pixel_kernels.py checks them all). The blur keeps
torchvision's kernel weights, drops the taps beyond 4 sigma (less than 1e-4 of the weight) and sums
separably in float32: within one grey level of torchvision's GaussianBlur (also tested).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Position of each colour-jitter operation in a draw's `jitter`; the same numbering as the batched views.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
# Pillow's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16, the ITU-R 601-2 luma in 16-bit fixed point.
LUMA_FIXED = (19595, 38470, 7471)
# Taps further than this many sigmas from the centre carry less than 1e-4 of a Gaussian kernel's weight.
BLUR_TRUNCATE_SIGMAS = 4.0
# Forward hue table layout: [which channel is the maximum (r, g, b), max - min, signed difference + 255].
_DIFFERENCES = 511


def _hue_byte(hue: np.ndarray) -> np.ndarray:
    """Pillow's rgb2hsv tail: h = fmod(h / 6.0 + 1.0, 1.0) in double, stored in a float; (int)(h * 255.0)."""
    with np.errstate(invalid="ignore"):
        wrapped = np.fmod(hue.astype(np.float64) / 6.0 + 1.0, 1.0).astype(np.float32).astype(np.float64)
        return np.clip(np.nan_to_num(wrapped * 255.0).astype(np.int64), 0, 255).astype(np.uint8)


def hue_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's RGB -> HSV -> RGB round trip as tables, so a hue shift costs a few look-ups per pixel.

    Returns (forward, saturation, middle, low, roles):
    forward[channel of the max, max - min, difference + 255] -> Pillow's H byte, where the difference is
        g - b, b - r or r - g when r, g or b is the maximum (r wins ties, then g, as in Pillow);
    saturation[max, max - min] -> Pillow's S byte;
    middle[S, shifted H] -> the factor of V giving the middle channel (q or t of Pillow's hsv2rgb);
    low[max, max - min] -> the smallest channel after the round trip (p of hsv2rgb), a byte;
    roles[shifted H, output channel] -> 0: V, 1: the middle value, 2: the low value.
    """
    spread = np.arange(256, dtype=np.float32)[:, None]  # max - min
    distance = np.arange(256, dtype=np.float32)[None, :]  # max - (another channel)
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = (distance / spread).astype(np.float32)  # Pillow's (float)(maxc - x) / cr
    one = np.float32(1.0)
    as_double = quotient.astype(np.float64)
    # The six cases of rgb2hsv: which channel is the max, which other one the min (whose quotient is 1).
    by_case = {
        ("r", "b"): _hue_byte(one - quotient),  # h = bc - gc, bc = 1
        ("r", "g"): _hue_byte(quotient - one),  # h = bc - gc, gc = 1
        ("g", "b"): _hue_byte(((2.0 + as_double) - 1.0).astype(np.float32)),  # h = 2.0 + rc - bc
        ("g", "r"): _hue_byte((3.0 - as_double).astype(np.float32)),
        ("b", "r"): _hue_byte(((4.0 + as_double) - 1.0).astype(np.float32)),  # h = 4.0 + gc - rc
        ("b", "g"): _hue_byte((5.0 - as_double).astype(np.float32)),
    }
    spreads = np.arange(256)[:, None]
    differences = np.arange(-255, 256)[None, :]
    rows = np.broadcast_to(spreads, (256, _DIFFERENCES))
    # distance of the middle channel from the max: spread - |difference| when it is the first-named channel.
    if_first_is_middle = np.clip(spreads - differences, 0, 255)
    if_second_is_middle = np.clip(spreads + differences, 0, 255)
    forward = np.zeros((3, 256, _DIFFERENCES), np.uint8)
    # difference >= 0: the second-named channel is the min (g - b >= 0: b is min when r is max).
    for index, (channel, low_first, low_second) in enumerate(
        (("r", "b", "g"), ("g", "r", "b"), ("b", "g", "r"))
    ):
        forward[index] = np.where(
            differences >= 0,
            by_case[(channel, low_first)][rows, if_first_is_middle],
            by_case[(channel, low_second)][rows, if_second_is_middle],
        )
    maxima = np.arange(256, dtype=np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (np.arange(256, dtype=np.float32)[None, :] / maxima).astype(np.float32)  # s = cr / maxc
        saturation = np.clip(np.nan_to_num(ratio.astype(np.float64) * 255.0).astype(np.int64), 0, 255)
    saturation = saturation.astype(np.uint8)
    # hsv2rgb: i = floor(h * 6.0 / 255.0), f = (float)(h * 6.0 / 255.0 - i), fs = (float)(s / 255.0).
    sixths = np.arange(256, dtype=np.float64) * 6.0 / 255.0
    sextant = np.floor(sixths).astype(np.int64)
    fraction = (sixths - sextant).astype(np.float32)
    fs = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
    q_factor = 1.0 - (fs[:, None] * fraction[None, :]).astype(np.float64)  # 1.0 - fs * f (a float product)
    t_factor = 1.0 - fs[:, None].astype(np.float64) * (1.0 - fraction[None, :].astype(np.float64))
    middle = np.where(sextant[None, :] % 2 == 1, q_factor, t_factor)
    p_factor = 1.0 - fs.astype(np.float64)
    low = np.floor(np.arange(256)[:, None] * p_factor[saturation] + 0.5).clip(0, 255).astype(np.uint8)
    # (r, g, b) per sextant: (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q).
    by_sextant = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1]], np.uint8)
    roles = by_sextant[sextant % 6]
    return forward.reshape(-1), saturation, middle, low, roles


_FORWARD, _SATURATION, _MIDDLE, _LOW, _ROLES = hue_tables()


@numba.njit(cache=True, nogil=True)
def _blend(base: np.float32, value: np.float32, factor: np.float32) -> np.uint8:
    """Pillow's Image.blend of one value: float32 base + factor * (value - base), clipped, truncated."""
    return np.uint8(min(max(base + factor * (value - base), np.float32(0.0)), np.float32(255.0)))


@numba.njit(cache=True, nogil=True)
def _blend_table(base: np.float32, factor: np.float32) -> np.ndarray:
    """_blend against a fixed base for all 256 values: brightness and contrast become one look-up."""
    table = np.empty(256, dtype=np.uint8)
    for value in range(256):
        table[value] = _blend(base, np.float32(value), factor)
    return table


@numba.njit(cache=True, nogil=True)
def _luma(r: np.int64, g: np.int64, b: np.int64) -> np.int64:
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


@numba.njit(cache=True, nogil=True)
def _jitter(
    source: np.ndarray, out: np.ndarray, operations: np.ndarray, factors: np.ndarray, grayscale: bool,
    forward: np.ndarray, saturation: np.ndarray, middle: np.ndarray, low: np.ndarray, roles: np.ndarray,
) -> None:  # fmt: skip
    height, width = source.shape[0], source.shape[1]
    pixels = out.reshape(height * width, 3)
    for y in range(height):
        for x in range(width):
            for c in range(3):
                out[y, x, c] = source[y, x, c]
    count = height * width
    for k in range(operations.shape[0]):
        operation = operations[k]
        factor = np.float32(factors[k])
        if operation == 0 or operation == 1:
            base = np.float32(0.0)  # brightness: blend with black
            if operation == 1:  # contrast: with the mean grey level, int(mean + 0.5) as ImageStat gives it
                total = 0
                for i in range(count):
                    total += _luma(np.int64(pixels[i, 0]), np.int64(pixels[i, 1]), np.int64(pixels[i, 2]))
                base = np.float32(np.int64(total / count + 0.5))
            table = _blend_table(base, factor)
            flat = out.reshape(count * 3)
            for i in range(count * 3):
                flat[i] = table[flat[i]]
        elif operation == 2:  # saturation: blend with the grey image
            for i in range(count):
                grey = np.float32(
                    _luma(np.int64(pixels[i, 0]), np.int64(pixels[i, 1]), np.int64(pixels[i, 2]))
                )
                for c in range(3):
                    pixels[i, c] = _blend(grey, np.float32(pixels[i, c]), factor)
        else:  # hue: `factor` holds the shift of the H byte, int(hue_factor * 255) % 256
            shift = np.int64(factors[k])
            for i in range(count):
                r, g, b = np.int64(pixels[i, 0]), np.int64(pixels[i, 1]), np.int64(pixels[i, 2])
                top = max(r, g, b)
                spread = top - min(r, g, b)
                if r == top:
                    key = g - b
                elif g == top:
                    key = b - r + 256 * 511
                else:
                    key = r - g + 2 * 256 * 511
                hue = (np.int64(forward[key + spread * 511 + 255]) + shift) & 255
                s = saturation[top, spread]
                values = (np.uint8(top), np.uint8(math.floor(top * middle[s, hue] + 0.5)), low[top, spread])
                for c in range(3):
                    pixels[i, c] = values[roles[hue, c]]
    if grayscale:
        for i in range(count):
            grey = np.uint8(_luma(np.int64(pixels[i, 0]), np.int64(pixels[i, 1]), np.int64(pixels[i, 2])))
            for c in range(3):
                pixels[i, c] = grey


def jitter(pixels: np.ndarray, operations: tuple[tuple[int, float], ...], grayscale: bool) -> np.ndarray:
    """The colour jitter (operations in the order given) and grayscale of one uint8 [H, W, 3] view.

    `pixels` may have any strides (a flipped view); the result is a new C-contiguous array. Each
    operation is torchvision's PIL function with that factor: adjust_brightness/contrast/saturation, and
    for HUE adjust_hue (a factor in [-0.5, 0.5]); grayscale is rgb_to_grayscale with 3 output channels.
    """
    kinds = np.array([operation for operation, _ in operations], dtype=np.int64)
    # Hue's factor enters Pillow's round trip only as the shift of the H byte: int(factor * 255) % 256.
    factors = np.array(
        [int(factor * 255) % 256 if operation == HUE else factor for operation, factor in operations],
        dtype=np.float64,
    )
    out = np.empty(pixels.shape, dtype=np.uint8)
    _jitter(pixels, out, kinds, factors, grayscale, _FORWARD, _SATURATION, _MIDDLE, _LOW, _ROLES)
    return out


def blur_weights(sigma: float, kernel_size: int) -> np.ndarray:
    """torchvision's Gaussian kernel (float32, normalised over kernel_size taps) less its negligible tails."""
    pad = kernel_size // 2
    offsets = np.arange(kernel_size, dtype=np.float32) - pad
    pdf = np.exp(-0.5 * (offsets / np.float32(sigma)) ** 2).astype(np.float32)
    weights = (pdf / pdf.sum()).astype(np.float32)
    radius = min(pad, math.ceil(BLUR_TRUNCATE_SIGMAS * sigma))
    return weights[pad - radius : pad + radius + 1]


@numba.njit(cache=True, nogil=True)
def _blur(pixels: np.ndarray, out: np.ndarray, weights: np.ndarray) -> None:
    """Separable: rows into a float32 buffer, then columns; reflect padding without repeating the edge."""
    height, width = pixels.shape[0], pixels.shape[1]
    taps = weights.shape[0]
    radius = taps // 2
    padded = np.empty((width + 2 * radius) * 3, dtype=np.float32)
    rows = np.empty((height, width * 3), dtype=np.float32)
    for y in range(height):
        for x in range(-radius, width + radius):
            source = -x if x < 0 else (2 * (width - 1) - x if x >= width else x)
            for c in range(3):
                padded[(x + radius) * 3 + c] = np.float32(pixels[y, source, c])
        row = rows[y]
        for j in range(width * 3):
            row[j] = weights[0] * padded[j]
        for k in range(1, taps):
            weight = weights[k]
            for j in range(width * 3):
                row[j] += weight * padded[j + 3 * k]
    flat_out = out.reshape(height, width * 3)
    column = np.empty(width * 3, dtype=np.float32)
    for y in range(height):
        column[:] = 0.0
        for k in range(taps):
            source = y + k - radius
            source = -source if source < 0 else (2 * (height - 1) - source if source >= height else source)
            weight = weights[k]
            above = rows[source]
            for j in range(width * 3):
                column[j] += weight * above[j]
        for j in range(width * 3):
            flat_out[y, j] = np.uint8(min(max(np.rint(column[j]), np.float32(0.0)), np.float32(255.0)))


def gaussian_blur(pixels: np.ndarray, sigma: float, kernel_size: int) -> np.ndarray:
    """torchvision's GaussianBlur(kernel_size, sigma) on a uint8 [H, W, 3] view, within one grey level."""
    if min(pixels.shape[:2]) <= kernel_size // 2:
        raise ValueError(f"A {kernel_size}-tap blur needs views larger than {kernel_size // 2} pixels.")
    out = np.empty(pixels.shape, dtype=np.uint8)
    _blur(pixels, out, blur_weights(sigma, kernel_size))
    return out


@numba.njit(cache=True, nogil=True)
def _normalise(pixels: np.ndarray, out: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    height, width = pixels.shape[0], pixels.shape[1]
    for c in range(3):
        for y in range(height):
            for x in range(width):
                out[c, y, x] = np.float32(pixels[y, x, c]) * scale[c] + shift[c]


def normalise_into(pixels: np.ndarray, out: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    """out[c] = pixels[..., c] * scale[c] + shift[c]: uint8 [H, W, 3] to float32 [3, H, W] in one pass."""
    _normalise(pixels, out, scale, shift)
