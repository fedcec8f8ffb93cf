"""Where a per-image view's time goes at 224 px: CPU milliseconds per view for each stage, one core.

    python bench/per_image_stages.py            # 128 ImageNet-like JPEGs (bench/photo_folder.py), 2 rounds

Each stage of the per-image path (views/crop_decode.py, views/per_image.py, views/pixel_kernels.py)
is timed on its own with the process's CPU clock, on the draws the path itself makes; the project's
PIL loader is timed beside the decode for comparison. The last round is reported (the first compiles
and warms the caches). Per-stage figures add up to a little less than bench/views.py's per-view cost,
which also counts the DataLoader and the drawing of parameters.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.photo_folder import write_photo_folder  # noqa: E402
from bench.report import load_average  # noqa: E402
from views import pixel_kernels  # noqa: E402
from views.config import HUE, AugmentConfig  # noqa: E402
from views.crop_decode import ImageFile  # noqa: E402
from views.decode import load_rgb  # noqa: E402
from views.per_image import PilSimCLRView, crop_resize  # noqa: E402
from views.per_image_dataset import NormaliseViews  # noqa: E402

T = TypeVar("T")


def stage_times(paths: list[str], size: int, rounds: int) -> dict[str, float]:
    """CPU seconds per view of each stage, from the last of `rounds` passes over the files."""
    view = PilSimCLRView(AugmentConfig.simclr(size, (0.5,) * 3, (0.25,) * 3, jitter_strength=1.0))
    rng = np.random.default_rng(0)
    totals: dict[str, float] = defaultdict(float)

    def timed(stage: str, work: Callable[..., T], *args: object) -> T:
        start = time.process_time()
        result = work(*args)
        totals[stage] += time.process_time() - start
        return result

    for _ in range(rounds):
        totals.clear()
        views = []
        for path in paths:
            source = timed("file header", ImageFile.open, path)
            draws = [view.draw(rng, *source.size) for _ in range(2)]
            decoded = timed("decode (libjpeg-turbo)", source.decode, 1)
            timed("for comparison: PIL loader", load_rgb, path)
            for draw in draws:
                pixels = timed("crop + resize", crop_resize, decoded, draw.box, size)
                pixels = pixels[:, ::-1] if draw.flip else pixels
                jitter = tuple((op, f) for op, f in draw.jitter if f != (0.0 if op == HUE else 1.0))
                pixels = timed("colour + grayscale", pixel_kernels.jitter, pixels, jitter, draw.grayscale)
                if draw.blur_sigma is not None:
                    blur = pixel_kernels.gaussian_blur
                    pixels = timed("blur", blur, pixels, draw.blur_sigma, view.blur_kernel)
                views.append(torch.from_numpy(pixels))
        collate = NormaliseViews((0.5,) * 3, (0.25,) * 3)
        timed("normalise into the batch", collate, [{"view1": v, "label": 0} for v in views])
    return {stage: seconds / (2 * len(paths)) for stage, seconds in totals.items()}


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as folder:
        write_photo_folder(Path(folder), args.photos, val_images=10)
        paths = sorted(str(path) for path in Path(folder, "train").rglob("*.jpg"))
        per_view = stage_times(paths, args.size, args.rounds)
    for stage, seconds in per_view.items():
        print(f"{stage:28s} {seconds * 1000:6.3f} ms per view")
    path_total = sum(seconds for stage, seconds in per_view.items() if not stage.startswith("for comparison"))
    print(f"{'per-image path, total':28s} {path_total * 1000:6.3f} ms per view")
    print(f"load average {load_average()}")


if __name__ == "__main__":
    main()
