"""What turning images upright by their EXIF orientation costs the per-image loader and the header scan.

    python bench/decode_orientation.py                 # 2,000 CIFAR-10 JPEGs, 9 rounds, ~1 minute
    python bench/decode_orientation.py --images 200 --rounds 3     # seconds

`views.decode.load_rgb` reads each file's orientation from its header and transposes the decoded image
when it is not 1; `upright_size` does the same for the native-size scan. The baselines are the same
reads without the orientation: PIL's open + 8-bit RGB conversion, and PIL's header size. One thread,
one process; each round times every variant over the same files in turn (A, B, A, B, ...), so load
drift on a shared machine hits both alike; a figure is the median over the rounds of the CPU time per
file, and the ratio is against the baseline of the same round. The CIFAR JPEGs carry no EXIF block,
the common case; a file with one costs one more tag lookup and, when it is rotated, one transpose.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as `python bench/decode_orientation.py`: make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.real_data import CIFAR10_JPEG_ROOT  # noqa: E402
from bench.report import load_average, versions  # noqa: E402
from views.decode import _eight_bit_rgb, load_rgb, upright_size  # noqa: E402


def rgb_as_stored(path: str) -> Image.Image:
    with Image.open(path) as image:
        return _eight_bit_rgb(image, path)


def size_as_stored(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


VARIANTS: dict[str, tuple[Callable[[str], object], Callable[[str], object]]] = {
    "decode (load_rgb)": (rgb_as_stored, load_rgb),
    "header size (upright_size)": (size_as_stored, upright_size),
}


def cpu_seconds_per_file(read: Callable[[str], object], paths: list[str]) -> float:
    start = time.process_time()
    for path in paths:
        read(path)
    return (time.process_time() - start) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    paths = sorted(str(path) for path in (CIFAR10_JPEG_ROOT / "train").glob("*/*.jpg"))[: args.images]
    print(f"load average {load_average()}; {versions()}; {len(paths)} files, {args.rounds} rounds")
    for name, (baseline, upright) in VARIANTS.items():
        ratios, baseline_times, upright_times = [], [], []
        for _ in range(args.rounds):
            before = cpu_seconds_per_file(baseline, paths)
            after = cpu_seconds_per_file(upright, paths)
            baseline_times.append(before)
            upright_times.append(after)
            ratios.append(after / before)
        upright_us = statistics.median(upright_times) * 1e6
        stored_us = statistics.median(baseline_times) * 1e6
        print(
            f"{name}: {upright_us:.1f} us/file upright vs {stored_us:.1f} as stored; "
            f"median ratio {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
