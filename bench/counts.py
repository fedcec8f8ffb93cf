"""Kernel-launching aten ops of the batched views of one CIFAR batch, eager and with compile_augment.

    python bench/counts.py                     # eager: ops per batch of 512, by op
    python bench/counts.py --compile           # also inductor's kernels for --data.compile_augment
    python bench/counts.py --json counts.json

The views come through the project's datamodule built from configs/cifar10.yaml with the batched path
forced: one training batch of `--batch-size` images from its train dataloader (num_workers=0, in this
process), then `on_after_batch_transfer`; wherever the views are made (in the loader on CPU, after the
transfer on an accelerator), both views and the probe view are counted, with the gather of the batch
(probe_view=True: the issue's bound counts it; a default run, probe_view=False, makes fewer).
The ops are counted on CPU by bench/op_counts.py; eager PyTorch dispatches the same aten ops on a GPU,
where each is at least one kernel launch. The pixel values do not change the count (no op depends on
them), so the images are synthetic. The data is one batch, so every batch counted also includes the
shuffle of an epoch's start.

Compiled (--compile), the pixel work runs as the kernels inductor generated (on CPU: C++ loops, one per
fused kernel, each run once per call of its graph) and the parameter sampling stays eager. A
TorchDispatchMode makes compiled code fall back to eager, so both modes are also counted from the
profiler's event tree (`count_profiled_ops`, a slightly different rule, hence the "profiled" figures of
the eager row too): eager ops outside compiled regions + aten ops called inside them + calls x generated
kernels of the graph = launches per batch.

`host_us_per_op` is the CPU time of the views of a batch of 8 images (pixel work negligible) over its
launching ops, median of 9 calls: the host's cost of one eager op here, for the GPU estimates in
BENCHMARKS.md (a GPU adds its launch latency on top).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from bench.op_counts import count_aten_ops, count_profiled_ops  # noqa: E402
from bench.pipelines import SourceInputs, build_datamodule, datamodule_batches  # noqa: E402
from bench.real_data import official_files, synthetic_pixels  # noqa: E402
from bench.report import machine_info, write_json  # noqa: E402

TOP_OPS = 15
TIMED_CALLS = 9
HOST_TIMING_BATCH = 8
CONFIG_SIZES = {"cifar10": 32, "stl10": 96}


def batched_views_counts(batch_size: int, compile_augment: bool, config: str = "cifar10") -> dict[str, Any]:
    """Eager ops of one `on_after_batch_transfer` call (the second one, after any compilation).

    "pixel_ops" are the ops with an output of at least one full-size plane per image (B x S x S
    elements): on a GPU their memory traffic, not only their launch, costs time at larger sizes.
    """
    size = CONFIG_SIZES[config]
    pixels = synthetic_pixels(batch_size, size)
    with tempfile.TemporaryDirectory(prefix="bench-counts-") as folder:
        with official_files(Path(folder), size, pixels):
            inputs = SourceInputs(
                config_file=REPO_ROOT / "configs" / f"{config}.yaml", root=Path(folder), pixels=pixels,
                batch_size=batch_size, workers=0, device=torch.device("cpu"),
                datamodule_args={"compile_augment": compile_augment, "probe_view": True},
            )  # fmt: skip
            source = datamodule_batches(build_datamodule(inputs, "batched"), inputs.device)
            kernels_before = compile_stats()
            views = next(source)  # sets the datamodule up (reading the files) and compiles, if asked
    compiled = {key: value - kernels_before[key] for key, value in compile_stats().items()}
    make_views = lambda: next(source)  # noqa: E731
    outside, inside, regions = count_profiled_ops(make_views)
    cpu_seconds = []
    for _ in range(TIMED_CALLS):
        start = time.process_time()
        make_views()
        cpu_seconds.append(time.process_time() - start)
    return {
        "ops": count_aten_ops(make_views),
        "pixel_ops": sum(count_aten_ops(make_views, min_elements=batch_size * size * size).values()),
        "profiled_ops_outside": sum(outside.values()),
        "profiled_ops_inside": sum(inside.values()),
        "compiled_region_calls": regions,
        "cpu_ms_per_batch": 1000 * statistics.median(cpu_seconds),
        "compiled": compiled,
        "shapes": {key: list(value.shape) for key, value in views.items() if isinstance(value, torch.Tensor)},
    }


def compile_stats() -> dict[str, int]:
    from torch._dynamo.utils import counters
    from torch._inductor import metrics

    return {
        "generated_kernels": metrics.generated_kernel_count,
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
    }


def summary_row(config: str, mode: str, result: dict[str, Any]) -> dict[str, Any]:
    ops: Counter[str] = result["ops"]
    row = {"config": config, "measure": "launching_aten_ops", "mode": mode}
    # Compiled code runs eagerly under the dispatch mode: its count there would be the eager one.
    row["ops"] = sum(ops.values()) if mode == "eager" else None
    row["pixel_ops"] = result["pixel_ops"] if mode == "eager" else None
    copied = ("profiled_ops_outside", "profiled_ops_inside", "compiled_region_calls")
    row.update({key: result[key] for key in (*copied, "cpu_ms_per_batch", "shapes")})
    if mode == "compiled":
        row.update(result["compiled"])
        kernels_per_call = row["generated_kernels"] / max(1, row["graphs"])
        row["launches_per_batch"] = round(
            row["profiled_ops_outside"]
            + row["profiled_ops_inside"]
            + row["compiled_region_calls"] * kernels_per_call
        )
    else:
        row["launches_per_batch"] = row["profiled_ops_outside"]
        row["by_op"] = dict(ops.most_common())
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=tuple(CONFIG_SIZES), default="cifar10", help="its .yaml")
    parser.add_argument("--batch-size", type=int, default=512, help="images in the counted batch")
    parser.add_argument("--compile", action="store_true", help="also count with --data.compile_augment")
    parser.add_argument("--json", type=Path, help="write {'machine': ..., 'results': [...]} here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    command = "python bench/counts.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), torch.device("cpu"))
    modes = {"eager": False, **({"compiled": True} if args.compile else {})}
    rows = [
        summary_row(args.config, mode, batched_views_counts(args.batch_size, on, args.config))
        for mode, on in modes.items()
    ]
    tiny = batched_views_counts(HOST_TIMING_BATCH, False, args.config)
    rows[0]["host_us_per_op"] = 1000 * tiny["cpu_ms_per_batch"] / sum(tiny["ops"].values())
    for row in rows:
        print(f"{row['config']}, {row['mode']}, views {row['shapes']}:")
        for key, value in row.items():
            if key not in ("config", "mode", "shapes", "by_op", "measure"):
                print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
        for name, count in list(row.get("by_op", {}).items())[:TOP_OPS]:
            print(f"  {count:5d}  {name}")
    if args.json is not None:
        write_json(args.json, machine, rows)
    return rows


if __name__ == "__main__":
    main()
