"""End-to-end views/s on an accelerator: views -> encoder -> head -> NT-Xent -> backward -> LARS step.

    python bench/train_step.py --json train-step.json            # a GPU machine: cifar10 and stl10
    python bench/train_step.py --configs cifar10 --compile       # compiled model (and compile_augment)
    python bench/train_step.py --configs imagefolder --backbone resnet50 --batch-size 256   # 224 px photos
    python bench/train_step.py --smoke                           # tiny model on CPU in seconds

For a GPU session; on a CPU the model dwarfs the views and the figures say little. The pipelines are
those of bench/views.py (bench/pipelines.py), with DataLoader workers (--workers) and the batches moved
to --device: `default` is the config's datamodule as configured (given an unfitted Trainer on the
device, so the batched path keeps its images there and makes the views after the transfer, as in a
run), the peers (`peers_pil`, `kornia`) get the config's augmentation settings. The model is the
config file's backbone with its temperature. `imagefolder` trains at 224 px on --photos ImageNet-like
JPEGs of varied sizes (bench/photo_folder.py) that every pipeline decodes: `default` is then the batched
path from files (JPEGs decoded on the GPU, views made there), `per_image` the per-image path in the
workers, `peers_pil` torchvision's ImageFolder with the peers' PIL transforms.

Measures: "augment" (batches ready on the device, nothing trained) and "train_step". Pipelines run one
after another, not interleaved: the workers of a loader prefetch in the background and would take CPU
from the pipeline being timed. A figure is the median of --repeats timed runs of --steps steps after
--warmup steps; the device is synchronised at the end of each run; x_peers is against `peers_pil`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

from bench.photo_folder import write_photo_folder  # noqa: E402
from bench.pipelines import BASELINE, Batch, SourceInputs, build_source, missing_dependency  # noqa: E402
from bench.real_data import CIFAR10_JPEG_ROOT, jpeg_pixels, official_files, synthetic_pixels, upscale  # noqa: E402
from bench.report import load_average, machine_info, markdown_table, write_json  # noqa: E402
from lightning_modules.optim import build_optimizer  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

CONFIG_SIZES = {"cifar10": 32, "stl10": 96, "imagefolder": 224}
PIPELINES = ("default", "per_image", "peers_pil", "kornia")
# Configs whose images are JPEG files of varied sizes, decoded by every pipeline; kornia batches images
# of one size held in memory and has no way to read them.
FILE_CONFIGS = ("imagefolder",)
TABLE_COLUMNS = ("config", "measure", "pipeline", "views_per_s", "x_peers")


class TrainStep:
    """One SimCLR optimisation step as the LightningModule runs it, without the Trainer around it."""

    def __init__(self, model: SimCLR, device: torch.device, bf16: bool, compile_model: bool) -> None:
        self.model = model.to(device)
        if device.type == "cuda":  # what SimCLR.setup("fit") does under the Trainer on CUDA
            self.model.to(memory_format=torch.channels_last)
            self.model.uses_channels_last = True
        if compile_model:
            self.model.encoder.compile()
            self.model.projection_head.compile()
        self.optimizer = build_optimizer("lars", self.model, lr=1.0, weight_decay=1e-6, momentum=0.9)
        self.device = device
        self.bf16 = bf16

    def __call__(self, batch: Batch) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, targets = self.model.contrastive_logits(batch["view1"], batch["view2"])
        loss = F.cross_entropy(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_rate(step: Callable[[], None], views_per_step: int, device: torch.device, args: Any) -> float:
    for _ in range(args.warmup):
        step()
    synchronize(device)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize(device)
        rates.append(args.steps * views_per_step / (time.perf_counter() - start))
    return statistics.median(rates)


def model_for(config_file: Path, image_size: int, batch_size: int, backbone: str | None) -> SimCLR:
    model = yaml.safe_load(config_file.read_text())["model"]
    return SimCLR(
        backbone=backbone or model["backbone"], image_size=image_size,
        temperature=model["temperature"], batch_size=batch_size,
    )  # fmt: skip


def measure_config(config: str, pixels: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    device = torch.device(args.device)
    config_file = REPO_ROOT / "configs" / f"{config}.yaml"
    rows = []
    size = CONFIG_SIZES[config]
    with tempfile.TemporaryDirectory(prefix="bench-train-step-") as folder, ExitStack() as stack:
        datamodule_args: dict[str, Any] = {"compile_augment": args.compile}
        if config in FILE_CONFIGS:
            write_photo_folder(Path(folder), args.photos, val_images=10)
            pixels, datamodule_args["image_size"] = None, size
        else:
            pixels = upscale(pixels, size)
            stack.enter_context(official_files(Path(folder), size, pixels))
        inputs = SourceInputs(
            config_file, Path(folder), pixels, args.batch_size, args.workers, device,
            datamodule_args=datamodule_args,
        )  # fmt: skip
        for pipeline in pipelines_for(config, args.pipelines):
            source = build_source(pipeline, inputs)
            views = 2 * args.batch_size
            rate = median_rate(lambda: next(source), views, device, args)  # noqa: B023
            rows.append({"config": config, "measure": "augment", "pipeline": pipeline, "views_per_s": rate})
            model = model_for(config_file, size, args.batch_size, args.backbone)
            train = TrainStep(model, device, args.precision == "bf16", args.compile)
            rate = median_rate(lambda: train(next(source)), views, device, args)  # noqa: B023
            rows.append(
                {"config": config, "measure": "train_step", "pipeline": pipeline, "views_per_s": rate}
            )
            source.close()  # shuts the loader's workers down before the next pipeline is timed
            print(f"# measured {config} / {pipeline}", file=sys.stderr, flush=True)
    baselines = {r["measure"]: r["views_per_s"] for r in rows if r["pipeline"] == BASELINE}
    for row in rows:
        row["x_peers"] = row["views_per_s"] / baselines[row["measure"]]
    return rows


def pipelines_for(config: str, pipelines: list[str]) -> list[str]:
    return [p for p in pipelines if not (config in FILE_CONFIGS and p == "kornia")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", help=f"any of {', '.join(CONFIG_SIZES)} (default cifar10,stl10; --smoke: cifar10)"
    )
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help=f"any of {', '.join(PIPELINES)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone", help="override the config's backbone (e.g. resnet50)")
    parser.add_argument("--images", type=int, default=10000, help="CIFAR-10 training JPEGs used")
    parser.add_argument("--photos", type=int, default=2560, help="ImageNet-like JPEGs (imagefolder)")
    parser.add_argument("--jpeg-root", type=Path, default=CIFAR10_JPEG_ROOT, help="CIFAR-10 as JPEG folders")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the timed runs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    parser.add_argument(
        "--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="loader workers"
    )
    parser.add_argument("--precision", choices=("bf16", "fp32"), help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="compile the model and our batched views")
    parser.add_argument("--smoke", action="store_true", help="tiny_resnet on CPU, a few steps, no workers")
    parser.add_argument("--json", type=Path, help="write {'machine': ..., 'results': [...]} here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.backbone, args.images, args.photos, args.batch_size = (
            "cpu",
            "tiny_resnet",
            16,
            16,
            8,
        )
        args.steps, args.warmup, args.repeats, args.workers = 1, 1, 2, 0
    if args.configs is None:
        args.configs = "cifar10" if args.smoke else "cifar10,stl10"
    if args.precision is None:
        args.precision = "bf16" if args.device.startswith("cuda") else "fp32"
    args.pipelines = [p for p in args.pipelines.split(",") if missing_dependency(p) is None]
    if BASELINE not in args.pipelines:
        raise SystemExit(f"--pipelines must include '{BASELINE}' (the baseline); choose from {PIPELINES}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high")
    command = "python bench/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), torch.device(args.device))
    machine.update(precision=args.precision, workers=args.workers, batch_size=args.batch_size)
    if all(config in FILE_CONFIGS for config in args.configs.split(",")):
        pixels = None  # photo folders only: no CIFAR-10 pixels needed
    elif args.smoke:
        pixels = synthetic_pixels(args.images, 32)
    else:
        pixels = jpeg_pixels(args.jpeg_root, args.images)
    rows = [row for config in args.configs.split(",") for row in measure_config(config, pixels, args)]
    machine["load_average_end"] = load_average()
    print("\n".join(f"{key}: {value}" for key, value in machine.items()))
    print(markdown_table(rows, TABLE_COLUMNS))
    if args.json is not None:
        write_json(args.json, machine, rows)
    return rows


if __name__ == "__main__":
    main()
