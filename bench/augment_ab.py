"""Our batched views against kornia's, interleaved run by run so that load drift hits both alike.

    python bench/augment_ab.py [--device cuda] [--batch-size 512] [--rounds 7]

Needs kornia (pip install kornia; not a dependency). Prints the median views/s of each per config.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.throughput import (  # noqa: E402
    CONFIGS,
    gpu_batches,
    kornia_batches,
    machine_info,
    synchronize,
    synthetic_images,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=2, help="batches per timed run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(machine_info(device))
    for config in CONFIGS.values():
        config = replace(config, batch_size=args.batch_size)
        pixels = torch.from_numpy(synthetic_images(2000, config.image_size)).permute(0, 3, 1, 2).contiguous()
        images = pixels.to(device)
        sources = {
            "ours": gpu_batches(images, config, device, False),
            "kornia": kornia_batches(images, config, device),
        }
        rates: dict[str, list[float]] = {name: [] for name in sources}
        for source in sources.values():
            next(source)  # warm-up
        for _ in range(args.rounds):
            for name, source in sources.items():
                synchronize(device)
                start = time.perf_counter()
                for _ in range(args.steps):
                    next(source)
                synchronize(device)
                rates[name].append(args.steps * 2 * config.batch_size / (time.perf_counter() - start))
        medians = {name: statistics.median(values) for name, values in rates.items()}
        print(
            f"{config.name}: "
            + ", ".join(f"{name} {rate:,.0f} views/s" for name, rate in medians.items())
            + f"; ours / kornia = {medians['ours'] / medians['kornia']:.2f}"
        )


if __name__ == "__main__":
    main()
