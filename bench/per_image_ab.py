"""Per-core views/s of the per-image path against the peers' PIL pipeline, interleaved in one process.

    python bench/per_image_ab.py --data-root ../shared/data/cifar10 [--images 2000] [--rounds 9]

One thread, no DataLoader: each pipeline makes two views of every image (decoded to PIL once, as a
dataset held in memory) and collates them in batches of 256. Rounds alternate the pipelines so load
drift hits all alike; the medians, their ratio to the peers and the load average are printed.
  ours        datamodules.pil_views: the two SimCLR views, normalised by the training collate
  ours+probe  the same plus the probe view, i.e. everything the training loader makes per image
  peers       torchvision v1 on PIL (RandomResizedCrop, flip, ColorJitter, grayscale[, blur]) + ToTensor
  tv_v2       the same steps with torchvision v2 on uint8 tensors (this project's former default)
32 px uses configs/cifar10.yaml's jitter strength 0.5; 96 px (the images upscaled) strength 1 and blur.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402
from torchvision import transforms as v1  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from datamodules.gpu_augment import AugmentConfig  # noqa: E402
from datamodules.pil_views import NormaliseViews, PilProbeView, PilSimCLRView  # noqa: E402
from datamodules.transforms import blur_kernel_size  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
BATCH = 256


def torchvision_steps(api, size: int, strength: float, blur: bool) -> list:  # noqa: ANN001 (v1 or v2)
    s = strength
    steps = [
        api.RandomResizedCrop(size, antialias=True),
        api.RandomHorizontalFlip(),
        api.RandomApply([api.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        api.RandomGrayscale(p=0.2),
    ]
    if blur:
        steps.append(api.RandomApply([api.GaussianBlur(blur_kernel_size(size), (0.1, 2.0))], p=0.5))
    return steps


def pipelines(size: int, strength: float, blur: bool) -> dict[str, Callable[[list[Image.Image]], object]]:
    config = AugmentConfig.simclr(size, MEAN, STD, jitter_strength=strength, blur=blur)
    view, probe, collate = PilSimCLRView(config), PilProbeView(size), NormaliseViews(MEAN, STD)
    rng = np.random.default_rng(0)
    peers = v1.Compose([*torchvision_steps(v1, size, strength, blur), v1.ToTensor(), v1.Normalize(MEAN, STD)])
    tv_v2 = v2.Compose(
        [v2.ToImage(), *torchvision_steps(v2, size, strength, blur), v2.ToDtype(torch.float32, scale=True)]
        + [v2.Normalize(list(MEAN), list(STD)), v2.ToPureTensor()]
    )

    def ours(batch: list[Image.Image]) -> object:
        return collate([{"view1": view(i, rng), "view2": view(i, rng)} for i in batch])

    def ours_probe(batch: list[Image.Image]) -> object:
        return collate(
            [{"view1": view(i, rng), "view2": view(i, rng), "probe_view": probe(i, rng)} for i in batch]
        )

    def two_views(transform: Callable) -> Callable[[list[Image.Image]], object]:
        return lambda batch: default_collate([{"view1": transform(i), "view2": transform(i)} for i in batch])

    return {"ours": ours, "ours+probe": ours_probe, "peers": two_views(peers), "tv_v2": two_views(tv_v2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, required=True, help="ImageFolder root with train/<class>/")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = sorted((args.data_root / "train").glob("*/*.*"))
    picks = np.random.default_rng(0).permutation(len(files))[: args.images]
    images = [Image.open(files[i]).convert("RGB") for i in picks]
    print(f"torch {torch.__version__}, Pillow {Image.__version__}, {len(images)} images, 1 thread")
    for size, strength, blur in [(32, 0.5, False), (96, 1.0, True)]:
        sized = [
            i if i.size == (size, size) else i.resize((size, size), Image.Resampling.BICUBIC) for i in images
        ]
        batches = [sized[k : k + BATCH] for k in range(0, len(sized), BATCH)]
        runs = pipelines(size, strength, blur)
        rates: dict[str, list[float]] = {name: [] for name in runs}
        loads = []
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                for batch in batches:
                    run(batch)
                rates[name].append(2 * len(sized) / (time.perf_counter() - start))
            loads.append(os.getloadavg()[0])
        peers = statistics.median(rates["peers"])
        for name, values in rates.items():
            ratios = [a / b for a, b in zip(values, rates["peers"], strict=True)]
            print(
                f"{size} px {name:10s} {statistics.median(values):7,.0f} views/s  x peers "
                f"{statistics.median(values) / peers:.2f} (per round {min(ratios):.2f}-{max(ratios):.2f})"
            )
        print(f"{size} px load average (1 min) over the rounds: {min(loads):.2f}-{max(loads):.2f}")


if __name__ == "__main__":
    main()
