"""Peak memory and time of a SimCLR step against --model.micro_batch_size (gradient caching).

    python bench/micro_batches.py --json bench/results/micro_batches_cpu.json     # CPU: ResNet-18, 32 px
    python bench/micro_batches.py --device cuda --backbone resnet50 --image-size 224 --batch-size 4096 \\
        --micro 256,512,4096 --json micro_batches_gpu.json                        # one GPU
    python bench/micro_batches.py --smoke                                         # tiny_resnet, seconds

The step is the module's own: SimCLR.contrastive_step (one pass, or micro-batches with cached gradients),
the backward of its loss and a LARS step, without the Trainer. Every configuration trains the same model
from the same weights on the same random views; the configuration whose micro-batch is the whole batch is
the one-pass baseline.

CPU, one thread (torch.set_num_threads(1)), both measures interleaved:
- time: CPU time (time.process_time) of one step. The configurations take turns in one process, one step
  each per round, in an order rotated every round; after an untimed round, each round gives a ratio to
  the baseline's step of the same round. Reported: medians over --rounds rounds. Other jobs on the
  machine slow every configuration of a round alike, so the ratios are what to compare, not the seconds.
- memory: peak RSS (VmHWM). A process's high-water mark never goes down, so each measurement is a
  fresh process that builds the model and takes --memory-steps steps of one configuration; the processes
  alternate between configurations over --memory-rounds rounds, before the timing builds its models.
  Also reported: the peak minus the RSS before the first step, what the step itself needs (the median
  over the rounds of both). Not ru_maxrss: Linux keeps in it what the process held between fork and
  exec, its parent's memory, so a child of a large process would report at least that.
GPU: torch.cuda.max_memory_allocated and images/s (images of the batch, two views each) over --steps
timed steps after --warmup, per configuration in turn, in bf16 with channels-last (as a run on CUDA); a
configuration that does not fit is reported as out of memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from bench.report import load_average, machine_info, markdown_table, write_json  # noqa: E402
from lightning_modules.optim import build_optimizer  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

CPU_COLUMNS = (
    "micro_batch_size", "cpu_s_per_step", "x_time", "wall_s_per_step", "peak_rss_mb", "step_rss_mb",
    "x_memory",
)  # fmt: skip
GPU_COLUMNS = ("micro_batch_size", "images_per_s", "x_time", "max_allocated_gb", "x_memory")


class Step:
    """One optimisation step of SimCLR at one micro-batch size."""

    def __init__(self, args: argparse.Namespace, micro_batch_size: int) -> None:
        torch.manual_seed(0)
        self.device = torch.device(args.device)
        self.model = SimCLR(
            backbone=args.backbone, image_size=args.image_size, temperature=0.5, batch_size=args.batch_size,
            micro_batch_size=micro_batch_size,
        ).to(self.device)  # fmt: skip
        if self.device.type == "cuda":  # what SimCLR.setup("fit") does under the Trainer on CUDA
            self.model.to(memory_format=torch.channels_last)
            self.model.uses_channels_last = True
        self.optimizer = build_optimizer("lars", self.model, lr=1.0, weight_decay=1e-6, momentum=0.9)
        generator = torch.Generator().manual_seed(1)
        shape = (args.batch_size, 3, args.image_size, args.image_size)
        self.views = [torch.randn(shape, generator=generator).to(self.device) for _ in range(2)]

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.model.contrastive_step(*self.views).loss
        loss.backward()
        self.optimizer.step()


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak so far) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_of_one_configuration(args: argparse.Namespace) -> dict[str, float]:
    """Run in a fresh process: the peak RSS of --memory-steps steps at --child micro-batch size."""
    step = Step(args, args.child)
    before = rss_mb("VmRSS")
    for _ in range(args.memory_steps):
        step()
    peak = rss_mb("VmHWM")
    return {"peak_rss_mb": peak, "step_rss_mb": peak - before}


def measure_memory(args: argparse.Namespace, micros: list[int]) -> dict[int, dict[str, float]]:
    passed_on = [
        "--device", args.device, "--backbone", args.backbone, "--image-size", str(args.image_size),
        "--batch-size", str(args.batch_size), "--memory-steps", str(args.memory_steps),
    ]  # fmt: skip
    samples: dict[int, list[dict[str, float]]] = {micro: [] for micro in micros}
    for round_index in range(args.memory_rounds):
        for micro in rotated(micros, round_index):
            command = [sys.executable, __file__, *passed_on, "--child", str(micro)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            samples[micro].append(json.loads(output.strip().splitlines()[-1]))
            print(f"# memory round {round_index}: micro {micro}: {samples[micro][-1]}", file=sys.stderr)
    return {
        micro: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for micro, runs in samples.items()
    }


def measure_cpu_time(
    args: argparse.Namespace, micros: list[int], baseline: int
) -> dict[int, dict[str, float]]:
    steps = {micro: Step(args, micro) for micro in micros}
    cpu: dict[int, list[float]] = {micro: [] for micro in micros}
    wall: dict[int, list[float]] = {micro: [] for micro in micros}
    for round_index in range(args.rounds + 1):  # round 0 warms up, untimed
        for micro in rotated(micros, round_index):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            steps[micro]()
            if round_index > 0:
                cpu[micro].append(time.process_time() - cpu_start)
                wall[micro].append(time.perf_counter() - wall_start)
        seconds = {micro: round(times[-1], 2) for micro, times in cpu.items() if times}
        print(f"# time round {round_index}: CPU s {seconds}, load {load_average()}", file=sys.stderr)
    return {
        micro: {
            "cpu_s_per_step": statistics.median(cpu[micro]),
            "wall_s_per_step": statistics.median(wall[micro]),
            "x_time": statistics.median(a / b for a, b in zip(cpu[micro], cpu[baseline], strict=True)),
        }
        for micro in micros
    }


def measure_gpu(args: argparse.Namespace, micros: list[int]) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    for micro in micros:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            step = Step(args, micro)
            for _ in range(args.warmup):
                step()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            results[micro] = {
                "images_per_s": args.steps * args.batch_size / seconds,
                "max_allocated_gb": torch.cuda.max_memory_allocated() / 1e9,
            }
        except torch.OutOfMemoryError:
            results[micro] = {"images_per_s": None, "max_allocated_gb": "out of memory"}
        step = None  # frees the model before the next configuration
        print(f"# measured micro {micro}: {results[micro]}", file=sys.stderr)
    return results


def rotated(items: list[int], by: int) -> list[int]:
    by %= len(items)
    return items[by:] + items[:by]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256, help="the contrastive batch (one device)")
    parser.add_argument("--micro", default="32,64,256", help="micro-batch sizes; the batch size is one pass")
    parser.add_argument("--rounds", type=int, default=9, help="CPU: timed rounds of interleaved steps")
    parser.add_argument("--memory-rounds", type=int, default=3, help="CPU: fresh processes per configuration")
    parser.add_argument("--memory-steps", type=int, default=1, help="CPU: steps per memory process")
    parser.add_argument("--warmup", type=int, default=3, help="GPU: untimed steps per configuration")
    parser.add_argument("--steps", type=int, default=10, help="GPU: timed steps per configuration")
    parser.add_argument("--smoke", action="store_true", help="tiny_resnet at batch 16, a few seconds")
    parser.add_argument("--json", type=Path, help="write {'machine': ..., 'results': [...]} here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # a memory process's micro-batch size
    args = parser.parse_args(argv)
    if args.smoke:
        args.backbone, args.image_size, args.batch_size, args.micro = "tiny_resnet", 16, 16, "4,16"
        args.rounds, args.memory_rounds = 2, 1
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)
    if args.child is not None:
        print(json.dumps(memory_of_one_configuration(args)))
        return []
    micros = [int(size) for size in args.micro.split(",")]
    if args.batch_size not in micros:
        raise SystemExit(f"--micro must include the batch size {args.batch_size} (one pass, the baseline)")
    command = "python bench/micro_batches.py " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info(command.strip(), torch.device(args.device))
    machine.update(backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size)
    if args.device == "cpu":
        memory = measure_memory(args, micros)  # first: the children are forked from a small process
        measured = measure_cpu_time(args, micros, baseline=args.batch_size)
        for micro, values in memory.items():
            measured[micro].update(values)
        memory_key, columns = "peak_rss_mb", CPU_COLUMNS
    else:
        measured = measure_gpu(args, micros)
        baseline = measured[args.batch_size]
        for values in measured.values():
            fits = values["images_per_s"] is not None and baseline["images_per_s"] is not None
            values["x_time"] = baseline["images_per_s"] / values["images_per_s"] if fits else None
        memory_key, columns = "max_allocated_gb", GPU_COLUMNS
    rows = [{"micro_batch_size": micro, **values} for micro, values in measured.items()]
    baseline_memory = measured[args.batch_size][memory_key]
    for row in rows:
        numbers = isinstance(row[memory_key], float) and isinstance(baseline_memory, float)
        row["x_memory"] = row[memory_key] / baseline_memory if numbers else None
    machine["load_average_end"] = load_average()
    print("\n".join(f"{key}: {value}" for key, value in machine.items()))
    print(markdown_table(rows, columns))
    if args.json is not None:
        write_json(args.json, machine, rows)
    return rows


if __name__ == "__main__":
    main()
