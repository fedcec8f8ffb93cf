"""One SimCLR training step per backbone, interleaved in one process: ViTs next to ResNet-18.

    python bench/backbone_step.py                                  # CPU, 1 thread, 32 px, batch 16
    python bench/backbone_step.py --device cuda --batch 512 --threads 0

A step is what training does per batch: both views through encoder and head as one batch of 2N,
NT-Xent, backward, optimiser step, each backbone with its config's optimiser (LARS for ResNets,
AdamW for ViTs). The backbones take turns (A, B, C, A, B, C, ...) so a change in machine load hits
them alike; each figure is the median over --repeats turns, and ratios are against the first backbone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# The script runs as `python bench/backbone_step.py`: make the repository's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lightning_modules.optim import build_optimizer  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

OPTIMISER = {"resnet": ("lars", 1.0, 1e-6), "vit": ("adamw", 6e-4, 0.1)}


def make_step(backbone: str, image_size: int, device: torch.device):
    """A closure running one optimiser step of `backbone`; returns its loss tensor (not synchronised)."""
    module = SimCLR(backbone=backbone, image_size=image_size).to(device)
    name, lr, weight_decay = OPTIMISER["vit" if "vit" in backbone else "resnet"]
    optimizer = build_optimizer(name, module, lr, weight_decay, momentum=0.9)

    def step(view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        logits, targets = module.contrastive_logits(view1, view2)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    parameters = sum(p.numel() for p in module.encoder.parameters())
    return step, parameters


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "vit_tiny", "vit_small"])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16, help="images per step (2x as many views)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    views = torch.randn(2, args.batch, 3, args.image_size, args.image_size, device=device)
    steps = {name: make_step(name, args.image_size, device) for name in args.backbones}
    times: dict[str, list[float]] = {name: [] for name in args.backbones}
    for turn in range(args.warmup + args.repeats):
        for name, (step, _) in steps.items():
            start = time.perf_counter()
            step(views[0], views[1])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if turn >= args.warmup:
                times[name].append(time.perf_counter() - start)

    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), device {device}, load average {os.getloadavg()[0]:.2f}; "
        f"{args.image_size} px, batch {args.batch}, median of {args.repeats} interleaved steps"
    )
    print("| backbone | encoder parameters | ms / step | vs " + args.backbones[0] + " |")
    print("|---|---|---|---|")
    baseline = statistics.median(times[args.backbones[0]])
    for name, (_, parameters) in steps.items():
        median = statistics.median(times[name])
        print(f"| {name} | {parameters / 1e6:.1f} M | {median * 1e3:.0f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
