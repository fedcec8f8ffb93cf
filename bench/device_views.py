"""The GPU path for photo folders of any size, measured on CPU: host cost per view, kernels per batch,
and from them a labelled estimate of views/s per GPU.

    python bench/device_views.py                   # 256 ImageNet-like JPEGs, 224 px, batch 256, ~2 min
    python bench/device_views.py --json device-views.json
    python bench/device_views.py --smoke           # seconds, tiny images (the test runs this)

What a GPU run does per batch on this path (views/path.py: an image folder of varied sizes, `auto`):
1. a DataLoader worker reads each file's bytes and header and collates them (`EncodedImages` without an
   augmenter): `worker_us_per_view`, CPU time per view (2 views per image), one thread;
2. the main process passes the bytes to nvJPEG in one `decode_jpeg` call and launches the views'
   kernels (`AnySizeViewAugmenter.views`): `launching_ops` per batch, counted on CPU by
   bench/op_counts.py's rule (eager PyTorch dispatches the same aten ops on a GPU, each at least one
   kernel launch), plus the decode call and the two small host-to-device copies (labels, size table)
   that a CPU run does not make. `host_us_per_op` is the CPU time of the views of a batch of 8 small
   images over their launching ops (the pixel work negligible), as bench/counts.py measures it, so
   `main_us_per_view` = launching ops x host_us_per_op / views.
Pixel values do not change these counts or the host work (only the image sizes do), so the images are
bench/photo_folder.py's ImageNet-like JPEGs. Figures are medians of --rounds; the machine's other load
moves them, so the load average is reported.

`estimate` derives views/s per GPU from these (a labelled estimate, not a measurement; no GPU was
lent): the slowest of (a) the workers, `--workers` cores x 1e6 / worker_us_per_view; (b) the main
process, 1e6 / main_us_per_view, its host time per batch not overlapping the GPU's work only in the
worst case; (c) nvJPEG, 2 x the published batched-decode rate of an A100 on ImageNet-size JPEGs
(7,800 images/s, pytorch/vision PRs 8468/8496, quoted in issue 18); (d) the views' kernels, their
bytes moved (`bytes_per_batch`: each op's inputs and output, counted on CPU) over the GPU's memory
bandwidth (A100 SXM 2.0 TB/s, H100 SXM 3.35 TB/s, NVIDIA's data sheets), at full bandwidth, hence
an upper bound.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from bench.op_counts import count_aten_ops, is_kernel_launching  # noqa: E402
from bench.photo_folder import write_photo_folder  # noqa: E402
from bench.report import load_average, machine_info, write_json  # noqa: E402
from datamodules import ImageFolderDataModule  # noqa: E402
from datamodules.encoded import EncodedImages, full_sizes  # noqa: E402
from datamodules.sampling import BatchKey  # noqa: E402
from views import filtered_crops  # noqa: E402
from views.any_size import AnySizeViewAugmenter  # noqa: E402
from views.jpeg import decode_images  # noqa: E402

CPU = torch.device("cpu")
# A GPU run also makes these, a CPU run not: the decode_jpeg call, and the label and size-table copies.
GPU_ONLY_OPS = 3
HOST_TIMING_BATCH = 8
# Published figures the estimate uses (see the module docstring).
NVJPEG_A100_IMAGES_PER_S = 7800
MEMORY_BANDWIDTH = {"A100": 2.0e12, "H100": 3.35e12}


def worker_seconds(files: EncodedImages, batch_size: int, rounds: int) -> list[float]:
    """CPU seconds a worker takes to read and collate one batch of files, per round."""
    seconds = []
    for round_index in range(rounds):
        start = round_index * batch_size % max(1, len(files) - batch_size + 1)
        key = BatchKey(0, round_index, torch.arange(start, start + batch_size))
        begin = time.process_time()
        files[key]
        seconds.append(time.process_time() - begin)
    return seconds


def view_ops(augmenter: AnySizeViewAugmenter, files: EncodedImages, indices: torch.Tensor) -> LaunchTally:
    """The launching ops and bytes they move of the views of one batch of `files`, decoded on the CPU."""
    batch = files[BatchKey(0, 0, indices)]
    decoded = decode_images(batch["encoded"], batch["orientation"], batch["name"], CPU)  # type: ignore[arg-type]
    # nvJPEG returns planar [3, H, W] images; libjpeg-turbo on the CPU channels-last ones, which packing
    # would copy one by one: made planar here, so the count is the GPU's.
    images = [image.contiguous() for image in decoded]
    sizes = full_sizes(batch)
    tally = LaunchTally()
    # Chunked as on an accelerator (one pass for a batch like this), not in cache-sized CPU chunks.
    cpu_budget = filtered_crops.intermediate_budget
    filtered_crops.intermediate_budget = lambda device: cpu_budget(torch.device("meta"))
    try:
        with tally:
            augmenter.views(images, sizes, augmenter.generator(CPU, 0))
    finally:
        filtered_crops.intermediate_budget = cpu_budget
    return tally


class LaunchTally(TorchDispatchMode):
    """Launching aten ops (bench/op_counts.py's rule), the bytes they read and write (every tensor
    argument and result, whole), and the ops that read a value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.bytes_moved = 0
        self.host_reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        result = func(*args, **(kwargs or {}))
        if func._schema.name in ("aten::_local_scalar_dense", "aten::nonzero"):
            self.host_reads += 1
        if is_kernel_launching(func):
            self.ops += 1
            leaves = pytree.tree_leaves((args, kwargs or {}, result))
            self.bytes_moved += sum(_bytes(t) for t in leaves if isinstance(t, torch.Tensor))
        return result


def _bytes(tensor: torch.Tensor) -> int:
    """What an op reads of (or writes to) a tensor: its elements, but no more than its memory holds (a
    broadcast or overlapping-window view is read from a small buffer, mostly from cache)."""
    return min(tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes())


def host_us_per_op(config: Any, rounds: int) -> float:
    """CPU microseconds per launching op of the views of 8 small images (the pixel work negligible)."""
    images, sizes = (
        list(torch.randint(0, 256, (HOST_TIMING_BATCH, 3, 24, 32), dtype=torch.uint8)),
        [(24, 32)] * 8,
    )
    tiny = AnySizeViewAugmenter(replace(config, image_size=16))
    launching = sum(count_aten_ops(lambda: tiny.views(images, sizes, tiny.generator(CPU, 0))).values())
    seconds = []
    for _ in range(rounds):
        begin = time.process_time()
        tiny.views(images, sizes, tiny.generator(CPU, 0))
        seconds.append(time.process_time() - begin)
    return 1e6 * statistics.median(seconds) / launching


def estimate(row: dict[str, Any], workers: int) -> dict[str, float]:
    """Views/s per GPU of each bound (module docstring) and the slowest, a labelled estimate."""
    views_per_batch = 2 * row["batch_size"]
    bounds = {
        f"workers ({workers} cores)": workers * 1e6 / row["worker_us_per_view"],
        "main process": 1e6 / row["main_us_per_view"],
        "nvJPEG (A100, published)": 2 * NVJPEG_A100_IMAGES_PER_S,
    }
    for gpu, bandwidth in MEMORY_BANDWIDTH.items():
        bounds[f"view kernels' memory traffic ({gpu})"] = views_per_batch * bandwidth / row["bytes_per_batch"]
    return {**bounds, "slowest": min(bounds.values())}


def measure(args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-device-views-") as folder:
        root = Path(folder)
        summary = write_photo_folder(root, args.photos, val_images=10)
        machine["photos"] = summary.describe()
        datamodule = ImageFolderDataModule(
            str(root), batch_size=args.batch_size, num_workers=0, image_size=args.image_size,
            view_path="batched", val_holdout=0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        )  # fmt: skip
        datamodule.setup("fit")
        in_workers = datamodule.train_dataset
        assert isinstance(in_workers, EncodedImages) and in_workers.augmenter is not None
        augmenter = in_workers.augmenter
        files = EncodedImages(in_workers.files, in_workers.labels.numpy(), 0)
        worker = worker_seconds(files, args.batch_size, args.rounds)
        tally = view_ops(augmenter, files, torch.arange(args.batch_size))
        per_op = host_us_per_op(augmenter.config, args.rounds)
    views = 2 * args.batch_size
    row = {
        "measure": "device_path_host_cost", "image_size": args.image_size, "batch_size": args.batch_size,
        "worker_us_per_view": 1e6 * statistics.median(worker) / views,
        "worker_us_per_view_min_max": [1e6 * min(worker) / views, 1e6 * max(worker) / views],
        "launching_ops": tally.ops + GPU_ONLY_OPS, "host_reads": tally.host_reads, "host_us_per_op": per_op,
        "bytes_per_batch": tally.bytes_moved,
    }  # fmt: skip
    row["main_us_per_view"] = row["launching_ops"] * per_op / views
    row["estimate_views_per_s_per_gpu"] = estimate(row, args.workers)
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=256, help="ImageNet-like training JPEGs")
    parser.add_argument("--batch-size", type=int, help="images per batch (default 256; --smoke: 8)")
    parser.add_argument("--image-size", type=int, default=224, help="view size")
    parser.add_argument("--rounds", type=int, default=9, help="timed rounds; figures are their medians")
    parser.add_argument("--workers", type=int, default=10, help="worker cores per GPU, for the estimate")
    parser.add_argument("--smoke", action="store_true", help="20 photos, batch 8, 32 px, 3 rounds")
    parser.add_argument("--json", type=Path, help="write {'machine': ..., 'results': [...]} here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.photos, args.image_size, args.rounds = 20, 32, 3
    if args.batch_size is None:
        args.batch_size = 8 if args.smoke else 256
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    command = "python bench/device_views.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), CPU)
    row = measure(args, machine)
    machine["load_average_end"] = load_average()
    print("\n".join(f"{key}: {value}" for key, value in machine.items()))
    for key, value in row.items():
        if isinstance(value, dict):
            print(f"{key} (a labelled estimate, not a measurement):")
            for bound, rate in value.items():
                print(f"  {bound}: {rate:,.0f} views/s")
        else:
            print(f"{key}: {value:,.1f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json is not None:
        write_json(args.json, machine, [row])
    return {"machine": machine, "results": [row]}


if __name__ == "__main__":
    main()
