"""Kernel-launching aten ops of the batched views of one CIFAR batch, eager and with compile_augment.

    python bench/counts.py                     # eager: ops per batch of 512, by op
    python bench/counts.py --compile           # also inductor's kernels for --data.compile_augment
    python bench/counts.py --json counts.json

The views come through the project's datamodule built from configs/cifar10.yaml with the batched path
forced: one training batch of `--batch-size` uint8 images, then `on_after_batch_transfer`, which makes
both views and the probe view. The ops are counted on CPU by bench/op_counts.py; eager PyTorch
dispatches the same aten ops on a GPU, where each is at least one kernel launch. The pixel values do not
change the count (no op depends on them), so the images are synthetic.

Compiled, the pixel work runs as the kernels inductor generated for it (on CPU: C++ loops, one per fused
kernel, each run once per call), and the parameter sampling stays eager: the report gives the number of
generated kernels, the number of compiled graphs, and the eager ops still dispatched around them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from bench.op_counts import count_aten_ops  # noqa: E402
from bench.pipelines import SourceInputs, build_datamodule  # noqa: E402
from bench.real_data import official_files, synthetic_pixels  # noqa: E402
from bench.report import machine_info, write_json  # noqa: E402

TOP_OPS = 15
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
                datamodule_args={"compile_augment": compile_augment},
            )  # fmt: skip
            datamodule = build_datamodule(inputs, "batched")
            datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    kernels_before = compile_stats()
    views = datamodule.on_after_batch_transfer(dict(batch), 0)  # the first call compiles, if asked
    compiled = {key: value - kernels_before[key] for key, value in compile_stats().items()}
    make_views = lambda: datamodule.on_after_batch_transfer(dict(batch), 0)  # noqa: E731
    counts = count_aten_ops(make_views)
    pixel_ops = sum(count_aten_ops(make_views, min_elements=batch_size * size * size).values())
    shapes = {key: list(value.shape) for key, value in views.items() if isinstance(value, torch.Tensor)}
    return {"ops": counts, "pixel_ops": pixel_ops, "compiled": compiled, "shapes": shapes}


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
    row = {
        "config": config,
        "measure": "launching_aten_ops",
        "mode": mode,
        "ops": sum(ops.values()),
        "pixel_ops": result["pixel_ops"],
        "shapes": result["shapes"],
    }
    row["by_op"] = dict(ops.most_common())
    if mode == "compiled":
        row.update(result["compiled"])
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
    for row in rows:
        print(f"{row['config']}, {row['mode']}: {row['ops']} kernel-launching aten ops, "
              f"{row['pixel_ops']} of them on whole images, for views {row['shapes']}")  # fmt: skip
        if row["mode"] == "compiled":
            print(f"  generated kernels {row['generated_kernels']}, graphs {row['graphs']}, "
                  f"graph breaks {row['graph_breaks']} (ops above: the eager ones around them)")  # fmt: skip
        for name, count in list(row["by_op"].items())[:TOP_OPS]:
            print(f"  {count:5d}  {name}")
    if args.json is not None:
        write_json(args.json, machine, rows)
    return rows


if __name__ == "__main__":
    main()
