"""Augmented views per second: our GPU path, our CPU loader, and the usual PIL pipeline, in one process.

    python bench/throughput.py                       # ResNet-18 at 32 px and ResNet-50 at 96 px, batch 512
    python bench/throughput.py --data-root /path/cifar10   # real images from an ImageFolder root
    python bench/throughput.py --smoke               # a tiny version on CPU in seconds (CI runs it)

Pipelines (the same images, the same model, the same optimiser):
  gpu         uint8 images on the device, views made by datamodules.gpu_augment after "transfer"
  cpu_loader  our per-image path: datamodules.pil_views in DataLoader workers (plus the probe view)
  peers       what most SimCLR ports do: torchvision.transforms (v1) on PIL images in DataLoader workers
  kornia      kornia.augmentation on the device, only when kornia is installed (not a dependency)

Measures: "augment" (views only, nothing trained) and "train_step" (views -> encoder -> head -> NT-Xent
-> backward -> LARS step). A view is one augmented image; each step makes 2 x batch views. Each figure is
the median of --repeats timed runs of --steps steps after --warmup steps; ratios are against "peers"
measured in the same process. Nothing inside a timed run synchronises with the host except the loaders'
own hand-over; the device is synchronised at the end of each run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# The script runs as `python bench/throughput.py`: make the repository's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset, RandomSampler  # noqa: E402
from torchvision import transforms as v1  # noqa: E402

from datamodules.gpu_augment import AugmentConfig, BatchViewAugmenter  # noqa: E402
from datamodules.pil_views import PilProbeView, PilSimCLRView, SimCLRTrainingDataset  # noqa: E402
from datamodules.transforms import blur_kernel_size  # noqa: E402
from lightning_modules.optim import build_optimizer  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
PIPELINES = ("gpu", "cpu_loader", "peers", "kornia")
BASELINE = "peers"


@dataclass(frozen=True)
class BenchConfig:
    name: str
    backbone: str
    image_size: int
    batch_size: int
    jitter_strength: float
    blur: bool


CONFIGS = {
    # The CIFAR-10 recipe (configs/cifar10.yaml) and the STL-10 one (configs/stl10.yaml).
    "resnet18-32": BenchConfig("resnet18-32", "resnet18", 32, 512, 0.5, False),
    "resnet50-96": BenchConfig("resnet50-96", "resnet50", 96, 512, 1.0, True),
}
SMOKE_CONFIG = BenchConfig("smoke-tiny-16", "tiny_resnet", 16, 16, 0.5, True)


@dataclass
class Result:
    config: str
    measure: str  # augment | train_step
    pipeline: str
    views_per_s: float | None
    ratio_vs_peers: float | None = None
    note: str = ""


# ----- images ------------------------------------------------------------------------------------------
def synthetic_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields [N, H, W, 3] uint8: structure for the crops, colour for the jitter."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator)
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = 0.1 * torch.rand(count, 3, size, size, generator=generator)
    pixels = ((fine + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def folder_images(root: Path, count: int, size: int) -> np.ndarray:
    """Up to `count` images of an ImageFolder root (root/train when present), resized to size x size."""
    split = root / "train" if (root / "train").is_dir() else root
    dataset = torchvision.datasets.ImageFolder(str(split))
    if len(dataset) == 0:
        raise FileNotFoundError(f"No images in '{split}'; --data-root wants an ImageFolder root.")
    picks = np.random.default_rng(0).permutation(len(dataset))[:count]
    images = []
    for index in picks:
        image = dataset.loader(dataset.samples[index][0]).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        images.append(np.asarray(image))
    return np.stack(images)


class PILImages(Dataset):
    """(PIL image, label) from an in-memory uint8 array, made per item as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), index % 10


class TwoViews(Dataset):
    """The peers' dataset: two views of one PIL image by a v1 transform (their "TwoCropTransform")."""

    def __init__(self, images: Dataset, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        image, label = self.images[index]
        return {"view1": self.transform(image), "view2": self.transform(image), "label": label}


def peers_transform(config: BenchConfig) -> v1.Compose:
    s = config.jitter_strength
    steps: list[Callable] = [
        v1.RandomResizedCrop(config.image_size),
        v1.RandomHorizontalFlip(),
        v1.RandomApply([v1.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v1.RandomGrayscale(p=0.2),
    ]
    if config.blur:
        steps.append(
            v1.RandomApply([v1.GaussianBlur(blur_kernel_size(config.image_size), (0.1, 2.0))], p=0.5)
        )
    return v1.Compose([*steps, v1.ToTensor(), v1.Normalize(CIFAR_MEAN, CIFAR_STD)])


# ----- batch sources: each yields training batches (view1, view2 on the device) forever ----------------
def endless_loader(
    dataset: Dataset, batch_size: int, workers: int, device: torch.device, collate: Callable | None = None
) -> Iterator[dict]:
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, collate_fn=collate,
    )  # fmt: skip
    for batch in loader:
        yield {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def gpu_batches(
    images: torch.Tensor, config: BenchConfig, device: torch.device, compile_views: bool
) -> Iterator[dict]:
    augmenter = BatchViewAugmenter(
        AugmentConfig.simclr(
            config.image_size, CIFAR_MEAN, CIFAR_STD, config.jitter_strength, blur=config.blur
        ),
        compile=compile_views,
    )
    labels = torch.arange(len(images), device=device) % 10
    while True:
        indices = torch.randint(0, len(images), (config.batch_size,), device=device)
        yield augmenter.training_batch(images[indices], labels[indices])


def kornia_batches(images: torch.Tensor, config: BenchConfig, device: torch.device) -> Iterator[dict]:
    import kornia.augmentation as K  # not a dependency: only reached when installed

    s = config.jitter_strength
    steps = [
        K.RandomResizedCrop((config.image_size, config.image_size), scale=(0.08, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
        K.RandomGrayscale(p=0.2),
    ]
    if config.blur:
        kernel = blur_kernel_size(config.image_size)
        steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5))
    augment = K.AugmentationSequential(
        *steps, K.Normalize(torch.tensor(CIFAR_MEAN), torch.tensor(CIFAR_STD))
    ).to(device)
    while True:
        indices = torch.randint(0, len(images), (config.batch_size,), device=device)
        batch = images[indices].float().div_(255)
        yield {"view1": augment(batch), "view2": augment(batch)}


def batch_source(
    pipeline: str, pixels: np.ndarray, config: BenchConfig, device: torch.device, args: argparse.Namespace
) -> Iterator[dict]:
    workers = args.workers
    if pipeline in ("gpu", "kornia"):
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(device)
        if pipeline == "gpu":
            return gpu_batches(images, config, device, args.compile)
        return kornia_batches(images, config, device)
    pil = PILImages(pixels)
    if pipeline == "cpu_loader":
        settings = AugmentConfig.simclr(
            config.image_size, CIFAR_MEAN, CIFAR_STD, config.jitter_strength, blur=config.blur
        )
        view = PilSimCLRView(settings)
        dataset = SimCLRTrainingDataset(pil, view, PilProbeView(config.image_size))
        return endless_loader(dataset, config.batch_size, workers, device, dataset.collate)
    return endless_loader(TwoViews(pil, peers_transform(config)), config.batch_size, workers, device)


# ----- timing ------------------------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_views_per_second(
    step: Callable[[], None], views_per_step: int, device: torch.device, steps: int, warmup: int, repeats: int
) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(steps * views_per_step / (time.perf_counter() - start))
    return statistics.median(rates)


class TrainStep:
    """One SimCLR optimisation step as the LightningModule runs it, without the Trainer around it."""

    def __init__(self, config: BenchConfig, device: torch.device, bf16: bool, compile_model: bool) -> None:
        self.model = SimCLR(
            backbone=config.backbone,
            image_size=config.image_size,
            temperature=0.5,
            batch_size=config.batch_size,
        ).to(device)
        # What SimCLR.setup("fit") does under the Trainer: channels_last on CUDA, compile when asked.
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
            self.model.uses_channels_last = True
        if compile_model:
            self.model.encoder.compile()
            self.model.projection_head.compile()
        self.optimizer = build_optimizer("lars", self.model, lr=1.0, weight_decay=1e-6, momentum=0.9)
        self.device = device
        self.bf16 = bf16

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, targets = self.model.contrastive_logits(batch["view1"], batch["view2"])
        loss = F.cross_entropy(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure(
    pipeline: str, pixels: np.ndarray, config: BenchConfig, device: torch.device, args: argparse.Namespace
) -> list[Result]:
    if pipeline == "kornia":
        try:
            import kornia  # noqa: F401
        except ImportError:
            note = "skipped: kornia is not installed (pip install kornia to compare)"
            measures = ("augment",) if args.augment_only else ("augment", "train_step")
            return [Result(config.name, measure, pipeline, None, note=note) for measure in measures]
    timing = dict(device=device, steps=args.steps, warmup=args.warmup, repeats=args.repeats)
    views_per_step = 2 * config.batch_size
    results = []
    source = batch_source(pipeline, pixels, config, device, args)
    augment_rate = median_views_per_second(lambda: next(source), views_per_step, **timing)
    results.append(Result(config.name, "augment", pipeline, augment_rate))
    if not args.augment_only:
        train = TrainStep(config, device, args.precision == "bf16", args.compile)
        train_rate = median_views_per_second(lambda: train(next(source)), views_per_step, **timing)
        results.append(Result(config.name, "train_step", pipeline, train_rate))
    source.close()  # shuts the loader's workers down before the next pipeline is timed
    return results


def add_ratios(results: list[Result]) -> None:
    baselines = {(r.config, r.measure): r.views_per_s for r in results if r.pipeline == BASELINE}
    for result in results:
        baseline = baselines.get((result.config, result.measure))
        if result.views_per_s is not None and baseline:
            result.ratio_vs_peers = result.views_per_s / baseline


# ----- report ------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} ({usable_cores} usable cores)",
        "device": str(device),
        "gpu": "none",
        "driver": "n/a",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = "unknown (nvidia-smi unavailable)"
    return info


def print_report(info: dict[str, str], results: list[Result], command: str) -> None:
    print(f"command: {command}")
    for key, value in info.items():
        print(f"{key}: {value}")
    print()
    print("| config | measure | pipeline | views/s | x peers | note |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for r in results:
        rate = f"{r.views_per_s:,.0f}" if r.views_per_s is not None else "-"
        ratio = f"{r.ratio_vs_peers:.2f}" if r.ratio_vs_peers is not None else "-"
        print(f"| {r.config} | {r.measure} | {r.pipeline} | {rate} | {ratio} | {r.note} |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, 16 px, a few steps, on CPU")
    parser.add_argument("--configs", default="resnet18-32,resnet50-96", help=f"any of {', '.join(CONFIGS)}")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"any of {', '.join(PIPELINES)}")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--data-root", type=Path, help="ImageFolder root of real images; else synthetic ones")
    parser.add_argument("--images", type=int, default=10000, help="images held in memory")
    parser.add_argument("--batch-size", type=int, help="override every config's batch (default 512)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    parser.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="loader workers"
    )
    parser.add_argument("--threads", type=int, help="torch threads of the main process (default: torch's)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model and our views")
    parser.add_argument("--augment-only", action="store_true", help="skip the training-step measure")
    parser.add_argument("--json", type=Path, help="also write machine info and results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.steps, args.warmup, args.repeats, args.images = "cpu", 2, 1, 3, 64
        args.workers, args.threads = 0, 1
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    return args


def main(argv: list[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    if args.threads is not None:
        # On a shared or small CPU, more threads than free cores makes every small op wait for the others.
        torch.set_num_threads(args.threads)
    if args.smoke:
        configs = [SMOKE_CONFIG]
    else:
        unknown = [name for name in args.configs.split(",") if name not in CONFIGS]
        if unknown:
            raise SystemExit(f"--configs: unknown {unknown}; choose from {list(CONFIGS)}")
        configs = [CONFIGS[name] for name in args.configs.split(",")]
    if args.batch_size is not None:
        configs = [BenchConfig(**{**asdict(c), "batch_size": args.batch_size}) for c in configs]
    pipelines = args.pipelines.split(",")
    if BASELINE not in pipelines or any(p not in PIPELINES for p in pipelines):
        raise SystemExit(f"--pipelines must include '{BASELINE}' and be among {PIPELINES}")
    results: list[Result] = []
    for config in configs:
        if args.data_root is not None:
            pixels = folder_images(args.data_root, args.images, config.image_size)
        else:
            pixels = synthetic_images(args.images, config.image_size)
        for pipeline in pipelines:
            results.extend(measure(pipeline, pixels, config, device, args))
            print(f"# measured {config.name} / {pipeline}", file=sys.stderr, flush=True)
    add_ratios(results)
    info = machine_info(device)
    info["precision"] = args.precision
    info["torch_threads"] = str(torch.get_num_threads())
    info["loader_workers"] = str(args.workers)
    info["images"] = f"{'folder ' + str(args.data_root) if args.data_root else 'synthetic'} ({args.images})"
    command = "python bench/throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print_report(info, results, command)
    if args.json is not None:
        payload = {"command": command, "machine": info, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(payload, indent=2))
    return results


if __name__ == "__main__":
    main()
