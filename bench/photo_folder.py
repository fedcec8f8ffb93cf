"""An ImageNet-like folder of JPEGs, made from photographs that ship inside installed packages.

ImageNet's training JPEGs are natural photographs of varied sizes and aspect ratios (most about 500x375,
short side mostly 300-500 px) at quality 75-95, so decoding and the crop-then-resize from several
hundred pixels to 224 are a real share of a view's cost. No such images can be downloaded here, and
none may be committed, so `write_photo_folder` cuts random windows out of the photographs that
scikit-learn and matplotlib install (sklearn.datasets' china.jpg and flower.jpg, matplotlib's
grace_hopper.jpg), scales each to a short side drawn from 300-500 px, and saves it at a quality drawn
from 75-95, as root/train/<class>/*.jpg and root/val/<class>/*.jpg. A seed fixes every draw.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# (package, file inside it): natural photographs installed with the package, not downloaded.
SOURCE_PHOTOGRAPHS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
SHORT_SIDE = (300, 500)
QUALITY = (75, 95)
# Width / height, log-uniform: ImageNet holds both orientations, 4:3 landscape most often.
ASPECT = (3 / 4, 4 / 3)
# A window covers at least this share of its photograph's short side, so no image is mostly upscaled blur.
MIN_WINDOW_SHARE = 0.5
CLASSES = 10


@dataclass(frozen=True)
class FolderSummary:
    """What the benchmark reports about the images it timed."""

    train_images: int
    mean_width: float
    mean_height: float
    mean_kilobytes: float

    def describe(self) -> str:
        return (
            f"{self.train_images} ImageNet-like JPEGs (bench/photo_folder.py): short side {SHORT_SIDE[0]}-"
            f"{SHORT_SIDE[1]} px, quality {QUALITY[0]}-{QUALITY[1]}, mean {self.mean_width:.0f}x"
            f"{self.mean_height:.0f}, {self.mean_kilobytes:.0f} KB"
        )


def source_photographs() -> list[Image.Image]:
    """The installed photographs, decoded; a clear error when their packages are missing."""
    photographs = []
    for package, relative in SOURCE_PHOTOGRAPHS:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"The ImageNet-like benchmark images are cut from {package}'s sample photographs, but "
                f"{package} is not installed; pip install scikit-learn matplotlib."
            )
        with Image.open(Path(spec.origin).parent / relative) as photograph:
            photographs.append(photograph.convert("RGB"))
    return photographs


def _one_image(photograph: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random window of the photograph with a drawn aspect ratio, scaled to a drawn short side."""
    width, height = photograph.size
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    # The largest window of this aspect ratio that fits, then a random share of it.
    full_w, full_h = min(width, height * aspect), min(height, width / aspect)
    share = rng.uniform(MIN_WINDOW_SHARE, 1.0)
    window_w, window_h = max(1, round(full_w * share)), max(1, round(full_h * share))
    left = int(rng.integers(0, width - window_w + 1))
    top = int(rng.integers(0, height - window_h + 1))
    window = photograph.crop((left, top, left + window_w, top + window_h))
    if rng.random() < 0.5:
        window = window.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    short = int(rng.integers(SHORT_SIDE[0], SHORT_SIDE[1] + 1))
    scale = short / min(window_w, window_h)
    return window.resize((round(window_w * scale), round(window_h * scale)), Image.Resampling.LANCZOS)


def write_photo_folder(root: Path, train_images: int, val_images: int = 20, seed: int = 0) -> FolderSummary:
    """root/train/class_k/NNNNN.jpg (image i in class i % CLASSES) and root/val/... like it."""
    if min(train_images, val_images) < CLASSES:
        raise ValueError(f"Each split needs at least {CLASSES} images, one per class folder.")
    rng = np.random.default_rng(seed)
    photographs = source_photographs()
    sizes, kilobytes = [], []
    for split, count in (("train", train_images), ("val", val_images)):
        for index in range(count):
            folder = root / split / f"class_{index % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            image = _one_image(photographs[int(rng.integers(len(photographs)))], rng)
            path = folder / f"{index:05d}.jpg"
            image.save(path, quality=int(rng.integers(QUALITY[0], QUALITY[1] + 1)))
            if split == "train":
                sizes.append(image.size)
                kilobytes.append(path.stat().st_size / 1000)
    widths, heights = zip(*sizes, strict=True) if sizes else ((0,), (0,))
    return FolderSummary(
        train_images, float(np.mean(widths)), float(np.mean(heights)), float(np.mean(kilobytes))
    )
