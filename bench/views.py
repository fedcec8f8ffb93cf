"""Per-core SimCLR views per second: our default path, our per-image path and the peers', interleaved.

    python bench/views.py                          # cifar10 (32 px) and stl10 (96 px), ~2-4 minutes
    python bench/views.py --config imagefolder     # 224 px, ImageNet-like JPEGs, decoding counted, ~4 min
    python bench/views.py --json views.json        # also writes machine block + rows as JSON
    PYTHONPATH=/tmp/bench-pkgs python bench/views.py   # with lightly and kornia installed there
    python bench/views.py --smoke                  # seconds, tiny synthetic data (the test runs this)

One thread (torch.set_num_threads(1)), one process, DataLoaders with num_workers=0: the figure is what
one CPU core delivers, the number that decides how many cores keep a GPU busy. Each round times one
batch of every pipeline in turn (A, B, C, A, B, C, ...), so load drift on a shared machine hits all
alike; a figure is the median over the rounds, and x_peers is that median over `peers_pil`'s. The
clock is this process's CPU time by default (views per core-second: on a machine shared with other
jobs, time the core was taken away is not counted); --clock wall times elapsed seconds instead, and
each row of the JSON has the other clock's median too.

Pipelines (bench/pipelines.py): `default` is the project's datamodule built from the config file's
`data:` section (configs/cifar10.yaml, configs/stl10.yaml), so it measures whatever path the config
picks: its train dataloader, then `on_after_batch_transfer`, where the batched path makes its views.
`per_image` and `batched` force one path in that same datamodule. `peers_pil` (torchvision v1 on PIL),
`lightly` (SimCLRTransform) and `kornia` (kornia.augmentation) are the peers, the last two only when
importable (install them outside the project: pip install --target /tmp/bench-pkgs --no-deps lightly
kornia kornia_rs). Every pipeline uses the config's own settings (cifar10: jitter strength 0.5, no
blur; stl10: jitter strength 1.0, blur with p=0.5), so all do the same augmentation.

Data: the first --images CIFAR-10 training JPEGs, decoded once, written in the official CIFAR-10 format
(and for stl10 upscaled to 96 px and written as the STL-10 binaries) in a temporary folder that the
datamodule reads with download off (bench/real_data.py). Decoding is counted for no pipeline: all start
from the same decoded pixels in memory. A view is one augmented training image; 2 are counted per
image. Like the peers', our pipelines make no probe view (the datamodule's default, probe_view=False).

`imagefolder` is the case where decoding counts: --photos ImageNet-like JPEGs of varied sizes (short side
300-500 px, quality 75-95, cut from photographs installed with scikit-learn and matplotlib:
bench/photo_folder.py) in a temporary folder, views of 224 px. `default` is configs/imagefolder.yaml with
--data.image_size 224 (mean/std estimated from the images, as for a user); every pipeline, the peers'
included, decodes every JPEG it views. kornia does not apply (it batches images of one size held in
memory); `batched` is listed and measured once the datamodule's batched path takes images of any size,
and reported as not available (with the datamodule's reason) before.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

# Run as `python bench/views.py`: make the repository's packages importable.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.photo_folder import write_photo_folder  # noqa: E402
from bench.pipelines import (  # noqa: E402
    BASELINE,
    PIPELINES,
    BatchSource,
    SourceInputs,
    build_source,
    missing_dependency,
)
from bench.real_data import CIFAR10_JPEG_ROOT, jpeg_pixels, official_files, synthetic_pixels, upscale  # noqa: E402
from bench.report import load_average, machine_info, write_json  # noqa: E402

CONFIG_SIZES = {"cifar10": 32, "stl10": 96, "imagefolder": 224}
# Configs whose images are JPEG files of varied sizes (decoding counted), not fixed-size pixels in memory.
FILE_CONFIGS = ("imagefolder",)
DEFAULT_PIPELINES = {
    "cifar10": ("default", "per_image", "peers_pil", "lightly", "kornia"),
    "stl10": ("default", "per_image", "peers_pil", "lightly", "kornia"),
    "imagefolder": ("default", "per_image", "batched", "peers_pil", "lightly"),
}
NOT_APPLICABLE = {"imagefolder": {"kornia": "kornia.augmentation batches images of one size held in memory"}}
# Pipelines whose datamodule may refuse a config (ValueError): reported as not available, not a failure.
MAY_REFUSE = ("batched",)
MEASURE = "views_per_core"


def interleaved_rates(
    sources: dict[str, Any], batch_size: int, rounds: int, warmup: int
) -> dict[str, dict[str, list[float]]]:
    """Views/s of one batch of each source per round, sources in turn; warm-up rounds are not kept.

    Each batch is timed by two clocks: "cpu" (this process's CPU time: what the views cost one core,
    robust to other jobs taking the core away) and "wall" (what a loader would deliver on this machine now).
    """
    rates: dict[str, dict[str, list[float]]] = {name: {"cpu": [], "wall": []} for name in sources}
    for round_index in range(warmup + rounds):
        for name, source in sources.items():
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            batch = next(source)
            cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
            if batch["view1"].shape[0] != batch_size or batch["view2"].shape != batch["view1"].shape:
                shape = tuple(batch["view1"].shape)
                raise RuntimeError(f"{name} made views of shape {shape}, not a batch of {batch_size}")
            if round_index >= warmup:
                rates[name]["cpu"].append(2 * batch_size / cpu)
                rates[name]["wall"].append(2 * batch_size / wall)
    return rates


def summarise(config: str, rates: dict[str, dict[str, list[float]]], clock: str) -> list[dict[str, Any]]:
    """One row per pipeline: the median of `clock`'s rates and x_peers against peers_pil's median."""
    baseline = statistics.median(rates[BASELINE][clock])
    other = "wall" if clock == "cpu" else "cpu"
    rows = []
    for pipeline, by_clock in rates.items():
        values = by_clock[clock]
        median = statistics.median(values)
        rows.append({
            "config": config, "measure": MEASURE, "pipeline": pipeline, "views_per_s": median,
            "x_peers": median / baseline, "clock": clock, "rounds": len(values), "median": median,
            "min": min(values), "max": max(values), "rates": values,
            f"{other}_views_per_s": statistics.median(by_clock[other]), "what": PIPELINES[pipeline],
        })  # fmt: skip
    return rows


def started_sources(
    inputs: SourceInputs, pipelines: list[str], unavailable: dict[str, str]
) -> dict[str, BatchSource]:
    """Each pipeline's source with its first batch taken (setup happens there, untimed).

    A MAY_REFUSE pipeline that the datamodule refuses for these images goes into `unavailable` with the
    datamodule's own reason instead of stopping the benchmark.
    """
    sources = {}
    for pipeline in pipelines:
        source = build_source(pipeline, inputs)
        try:
            next(source)
        except ValueError as refusal:
            if pipeline not in MAY_REFUSE:
                raise
            unavailable[pipeline] = f"refused by the datamodule: {refusal}"
            continue
        sources[pipeline] = source
    return sources


def measure_config(
    config: str, pixels: np.ndarray, pipelines: list[str], args: argparse.Namespace, machine: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The rows of one config, and the pipelines that were not measured with why."""
    size = CONFIG_SIZES[config]
    unavailable = {p: reason for p, reason in NOT_APPLICABLE.get(config, {}).items() if p in pipelines}
    pipelines = [p for p in pipelines if p not in unavailable]
    with tempfile.TemporaryDirectory(prefix=f"bench-views-{config}-") as folder, ExitStack() as stack:
        root = Path(folder)
        if config in FILE_CONFIGS:
            summary = write_photo_folder(root, args.photos, val_images=args.val_photos)
            machine["photos"] = summary.describe()
            config_pixels, datamodule_args = None, {"image_size": size}
        else:
            config_pixels, datamodule_args = upscale(pixels, size), {}
            stack.enter_context(official_files(root, size, config_pixels))
        inputs = SourceInputs(
            config_file=args.config_dir / f"{config}.yaml", root=root, pixels=config_pixels,
            batch_size=args.batch_size, workers=0, device=torch.device("cpu"),
            datamodule_args=datamodule_args,
        )  # fmt: skip
        sources = started_sources(inputs, pipelines, unavailable)
        rates = interleaved_rates(sources, args.batch_size, args.rounds, args.warmup)
    return summarise(config, rates, args.clock), unavailable


def wide_table(rows: list[dict[str, Any]]) -> str:
    """Pipelines down, configs across: the layout of BENCHMARKS.md, ready to paste."""
    configs = list(dict.fromkeys(row["config"] for row in rows))
    by_key = {(row["config"], row["pipeline"]): row for row in rows}
    header = "| per-core views/s | " + " | ".join(
        f"{config} ({CONFIG_SIZES[config]} px), median (min-max) | x peers" for config in configs
    )
    lines = [header + " |", "|---|" + "---:|---:|" * len(configs)]
    for pipeline in dict.fromkeys(row["pipeline"] for row in rows):
        cells = []
        for config in configs:
            row = by_key.get((config, pipeline))
            if row is None:
                cells += ["-", "-"]
            else:
                spread = f"{row['median']:,.0f} ({row['min']:,.0f}-{row['max']:,.0f})"
                cells += [spread, f"{row['x_peers']:.2f}"]
        lines.append(f"| {pipeline} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", "--config", default="cifar10,stl10", help=f"any of {', '.join(CONFIG_SIZES)}"
    )
    parser.add_argument(
        "--pipelines",
        help=f"any of {', '.join(PIPELINES)}; default per config: "
        + "; ".join(f"{config}: {','.join(names)}" for config, names in DEFAULT_PIPELINES.items()),
    )
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-10 training JPEGs used")
    parser.add_argument("--photos", type=int, default=400, help="ImageNet-like training JPEGs (imagefolder)")
    parser.add_argument("--val-photos", type=int, default=20, help="their val/ split (read by no pipeline)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (one batch per round)")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds; figures are their medians")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--jpeg-root", type=Path, default=CIFAR10_JPEG_ROOT, help="CIFAR-10 as JPEG folders")
    parser.add_argument("--config-dir", type=Path, default=REPO_ROOT / "configs", help="holds <config>.yaml")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu",
        help="cpu: process CPU time (per-core cost, robust to load); wall: elapsed time",
    )  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, 3 rounds: runs in seconds")
    parser.add_argument("--json", type=Path, help="write {'machine': ..., 'results': [...]} here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.photos, args.val_photos = 16, 16, 10
        args.batch_size, args.rounds, args.warmup = 8, 3, 1
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)  # per core: a second thread would also share the machine's other core
    torch.manual_seed(0)
    configs = args.configs.split(",")
    requested = {
        config: args.pipelines.split(",") if args.pipelines else list(DEFAULT_PIPELINES.get(config, ()))
        for config in configs
    }
    listed = list(dict.fromkeys(p for names in requested.values() for p in names))
    unknown = [c for c in configs if c not in CONFIG_SIZES] + [p for p in listed if p not in PIPELINES]
    if unknown or any(BASELINE not in names for names in requested.values()):
        raise SystemExit(f"--configs/--pipelines: unknown {unknown} or no '{BASELINE}' (the baseline)")
    skipped = {p: reason for p in listed if (reason := missing_dependency(p)) is not None}
    command = "python bench/views.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), torch.device("cpu"))
    pixels = None
    if any(config not in FILE_CONFIGS for config in configs):
        if args.smoke:
            pixels, machine["images"] = synthetic_pixels(args.images, 32), f"{args.images} synthetic (smoke)"
        else:
            pixels = jpeg_pixels(args.jpeg_root, args.images)
            machine["images"] = f"the first {args.images} JPEGs of {args.jpeg_root}/train, by class in turn"
    machine["batch_size"] = args.batch_size
    machine["clock"] = args.clock
    results: list[dict[str, Any]] = []
    not_measured: dict[str, dict[str, str]] = {}
    for config in configs:
        pipelines = [p for p in requested[config] if p not in skipped]
        rows, not_measured[config] = measure_config(config, pixels, pipelines, args, machine)
        results.extend(rows)
        print(f"# measured {config}, load average {load_average()}", file=sys.stderr, flush=True)
    machine["load_average_end"] = load_average()
    print("\n".join(f"{key}: {value}" for key, value in machine.items()))
    print(wide_table(results))
    for pipeline, reason in skipped.items():
        print(f"skipped {pipeline}: {reason}")
    for config, reasons in not_measured.items():
        for pipeline, reason in reasons.items():
            print(f"not measured on {config}: {pipeline}: {reason}")
    if args.json is not None:
        write_json(args.json, machine, results, skipped=skipped, not_measured=not_measured)
    return {"machine": machine, "results": results, "skipped": skipped, "not_measured": not_measured}


if __name__ == "__main__":
    main()
