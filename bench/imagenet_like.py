"""A folder of ImageNet-like JPEGs, cut from photographs that installed packages ship (nothing downloaded).

ImageNet's training images are photographs of varied sizes, mostly 300-500 px on the short side, saved
at JPEG quality 75-95; reading them is decoding them. Each image here is a random window of one of
scikit-learn's and matplotlib's sample photographs (china.jpg, flower.jpg, grace_hopper.jpg), with an
aspect ratio drawn from 3:4 to 4:3, scaled to a short side drawn from 300-500 px and saved at a quality
drawn from 75-95, as root/train/<class>/N.jpg and root/val/<class>/N.jpg. A seed fixes every draw.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOGRAPHS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
SHORT_SIDE, QUALITY, CLASSES = (300, 500), (75, 95), 10


def photographs() -> list[Image.Image]:
    found = []
    for package, relative in PHOTOGRAPHS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"{package} is not installed; its sample photographs are the source images."
            )
        with Image.open(Path(spec.origin).parent / relative) as photograph:
            found.append(photograph.convert("RGB"))
    return found


def write_imagenet_like(root: Path, train: int, val: int = 20, seed: int = 0) -> dict[str, float]:
    """Writes the folder; returns the training images' mean width, height and kilobytes."""
    rng = np.random.default_rng(seed)
    sources = photographs()
    widths, heights, kilobytes = [], [], []
    for split, count in (("train", train), ("val", val)):
        for index in range(count):
            source = sources[int(rng.integers(len(sources)))]
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            full_w, full_h = (
                min(source.width, source.height * aspect),
                min(source.height, source.width / aspect),
            )
            share = rng.uniform(0.5, 1.0)  # at least half the photograph's extent: no upscaled blur
            w, h = max(1, round(full_w * share)), max(1, round(full_h * share))
            left, top = int(rng.integers(source.width - w + 1)), int(rng.integers(source.height - h + 1))
            scale = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1)) / min(w, h)
            image = source.crop((left, top, left + w, top + h)).resize(
                (round(w * scale), round(h * scale)), Image.Resampling.LANCZOS
            )
            folder = root / split / f"class_{index % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{index:06d}.jpg"
            image.save(path, quality=int(rng.integers(QUALITY[0], QUALITY[1] + 1)))
            if split == "train":
                widths.append(image.width)
                heights.append(image.height)
                kilobytes.append(path.stat().st_size / 1000)
    return {"mean_width": float(np.mean(widths)), "mean_height": float(np.mean(heights)),
            "mean_kilobytes": float(np.mean(kilobytes))}  # fmt: skip
