"""What a training step costs beyond the model: Lightning with train.py's default callbacks vs a plain loop.

    python bench/step_overhead.py                      # 9 interleaved rounds, batch 8, near-free model
    python bench/step_overhead.py --json step.json     # also write the rows as JSON
    python bench/step_overhead.py --rounds 1 --steps 5 --warmup 2 --probe-batch 2   # a quick smoke run

Measures (one CPU thread, everything in this process):
  step_ms            ms per training step of a near-free model (a linear encoder) at --batch images,
                     "plain_pytorch" (forward, loss, backward, LARS, scheduler over the same DataLoader)
                     and "lightning" (Trainer.fit with the callbacks cli.py adds: progress bar, probe, both
                     checkpoints, kNN monitor, curves, view pairs, non-finite check, SIGTERM checkpoint,
                     views/s, run summary; AtomicCheckpointIO; no logger). Rounds alternate A, B, A, B...
  overhead_ms        per round, lightning minus plain_pytorch; the median over rounds. "lightning_bare" is
                     Trainer.fit without callbacks, progress bar or checkpointing: Lightning's own floor;
                     "lightning_no_probe" has every default callback but the online probe, whose step (a
                     linear layer and its AdamW on the features) is the largest callback's work per step.
  host_syncs_per_step, launching_ops_per_step
                     aten ops per steady step in this process (TorchDispatchMode), on non-logging steps.
  probe_flops_ratio  FLOPs of the online probe's work per step over the FLOPs of the model's training step
                     (ResNet-18, 32 px, --probe-batch images), for the probe variants "training_views"
                     (a linear layer on the training forward's features) and "probe_view" (an extra
                     no-grad encoder forward of the probe view, then the linear layer).
  probe_time_ratio   the same ratio in measured time, median of interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The script runs as `python bench/step_overhead.py`: make the repository's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pytorch_lightning.callbacks import ModelCheckpoint  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from callbacks import KNNMonitor, OnlineLinearProbe, TrainingCurves, ViewPairsGrid  # noqa: E402
from callbacks.finite_loss import StopOnNonFiniteLoss  # noqa: E402
from callbacks.preemption import CheckpointOnStop  # noqa: E402
from callbacks.progress_bar import ReadableProgressBar  # noqa: E402
from callbacks.run_summary import RunSummary  # noqa: E402
from callbacks.throughput import ViewsPerSecond  # noqa: E402
from lightning_modules.optim import build_optimizer, warmup_cosine  # noqa: E402
from lightning_modules.simclr import ProjectionHead, SimCLR  # noqa: E402
from reliability.checkpoint_io import AtomicCheckpointIO  # noqa: E402
from tests.op_counts import AtenOpCounter  # noqa: E402

IMAGE_SIZE, NUM_CLASSES, FEATURE_DIM = 32, 10, 64


class RandomBatches(pl.LightningDataModule):
    """The same precomputed batches for both loops, and what the default callbacks read from a datamodule."""

    num_classes, image_size, mean, std = NUM_CLASSES, IMAGE_SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def __init__(self, batches: list[dict[str, Tensor]]) -> None:
        super().__init__()
        self.batches = batches
        self.batch_size = batches[0]["view1"].shape[0]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)


def make_batches(count: int, batch: int) -> list[dict[str, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = lambda: torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)  # noqa: E731
    return [
        {"view1": images(), "view2": images(), "probe_view": images(),
         "label": torch.randint(0, NUM_CLASSES, (batch,), generator=generator)}
        for _ in range(count)
    ]  # fmt: skip


def near_free_model(batch: int) -> SimCLR:
    """SimCLR with a linear encoder: the model costs next to nothing, so what remains is overhead."""
    torch.manual_seed(0)
    model = SimCLR(backbone="tiny_resnet", image_size=IMAGE_SIZE, batch_size=batch, warmup_epochs=0.0)
    model.encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, FEATURE_DIM))
    model.feature_dim = FEATURE_DIM
    model.projection_head = ProjectionHead(FEATURE_DIM, FEATURE_DIM, 32, num_layers=2, batch_norm=True)
    return model


class StepClock(pl.Callback):
    """perf_counter at every training batch start: a step is the time from one start to the next."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int):
        self.starts.append(time.perf_counter())


def default_callbacks() -> list[pl.Callback]:
    """What cli.py adds to every `train.py fit`, with its defaults (README.md, Training)."""
    return [
        ReadableProgressBar(),
        OnlineLinearProbe(num_classes=NUM_CLASSES),
        ModelCheckpoint(monitor="val/probe_top1", mode="max", save_last=True, enable_version_counter=False),
        ModelCheckpoint(every_n_train_steps=500, save_top_k=0, save_last=True, enable_version_counter=False),
        KNNMonitor(), TrainingCurves(), ViewPairsGrid(),
        StopOnNonFiniteLoss(), CheckpointOnStop(), ViewsPerSecond(), RunSummary(),
    ]  # fmt: skip


def lightning_steps(
    batches: list[dict[str, Tensor]],
    log_every: int,
    extra: list[pl.Callback],
    bare: bool = False,
    probe: bool = True,
) -> StepClock:
    """bare: Lightning's own loop only (no callbacks, no progress bar, no checkpointing): its floor.
    probe: False leaves out the online probe of the default callbacks.
    """
    clock = StepClock()
    defaults = [c for c in default_callbacks() if probe or not isinstance(c, OnlineLinearProbe)]
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=len(batches), logger=False, limit_val_batches=0,
            num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=log_every,
            callbacks=[clock, *([] if bare else defaults), *extra], default_root_dir=run_dir,
            plugins=[] if bare else [AtomicCheckpointIO()], enable_checkpointing=not bare,
            enable_progress_bar=not bare,
        )  # fmt: skip
        trainer.fit(near_free_model(len(batches[0]["label"])), datamodule=RandomBatches(batches))
    return clock


def plain_steps(
    batches: list[dict[str, Tensor]], counted: tuple[AtenOpCounter, range] | None = None
) -> list[float]:
    """The model's own work, as a hand-written loop would do it: the baseline of the overhead.

    counted: count the aten ops of the steps in the range with the counter.
    """
    model = near_free_model(len(batches[0]["label"])).train()
    optimizer = build_optimizer("lars", model, 0.3 * len(batches[0]["label"]) / 256, 1e-6, 0.9)
    schedule = lambda step: warmup_cosine(step, len(batches), 0)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    starts = []
    for index, batch in enumerate(DataLoader(batches, batch_size=None)):
        if counted is not None and index - 1 in counted[1]:
            counted[0].__exit__(None, None, None)
        if counted is not None and index in counted[1]:
            counted[0].__enter__()
        starts.append(time.perf_counter())
        logits, targets = model.contrastive_logits(batch["view1"], batch["view2"])
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return starts


def ms_per_step(starts: list[float], warmup: int, steps: int) -> float:
    return 1000 * (starts[warmup + steps] - starts[warmup]) / steps


class CountSteadySteps(pl.Callback):
    """Counts aten ops of the steady, non-logging steps in this process (the loader is a plain list)."""

    def __init__(self, warmup: int, steps: int, log_every: int) -> None:
        self.window, self.log_every = range(warmup, warmup + steps), log_every
        self.counter, self.counted_steps, self._counting = AtenOpCounter(), 0, False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int):
        if self._counting:
            self.counter.__exit__(None, None, None)
            self.counted_steps += 1
        self._counting = idx in self.window and (idx + 1) % self.log_every != 0
        if self._counting:
            self.counter.__enter__()


def op_counts_per_step(batches: list[dict[str, Tensor]], warmup: int, steps: int, log_every: int) -> dict:
    counting = CountSteadySteps(warmup, steps, log_every)
    lightning_steps(batches, log_every, [counting])
    plain = AtenOpCounter()
    plain_steps(batches, (plain, range(warmup, warmup + steps)))
    per_step = {
        "lightning": (counting.counter.result(), counting.counted_steps),
        "plain_pytorch": (plain.result(), steps),
    }
    return {name: (counts.host_syncs() / n, counts.launching() / n) for name, (counts, n) in per_step.items()}


def probe_costs(batch: int, rounds: int) -> list[dict[str, Any]]:
    """FLOPs and time of the probe's work per step over those of a ResNet-18 training step at 32 px."""
    torch.manual_seed(0)
    model = SimCLR(backbone="resnet18", image_size=IMAGE_SIZE, batch_size=batch).train()
    optimizer = build_optimizer("lars", model, 0.1, 1e-6, 0.9)
    data = make_batches(1, batch)[0]
    probe = nn.Linear(model.feature_dim, NUM_CLASSES)
    probe_optimizer = torch.optim.AdamW(probe.parameters(), fused=True)
    state: dict[str, Tensor] = {}

    def model_step() -> None:
        representations = model(torch.cat([data["view1"], data["view2"]]))
        logits, targets = model._logits_of_representations(representations)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(logits, targets).backward()
        optimizer.step()
        state["features"] = representations.detach()

    def probe_step(features: Tensor, labels: Tensor) -> None:
        probe_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(probe(features), labels).backward()
        probe_optimizer.step()

    def training_views() -> None:
        probe_step(state["features"], data["label"].repeat(2))

    def probe_view() -> None:
        model.eval()
        with torch.no_grad():
            features = model(data["probe_view"])
        model.train()
        probe_step(features, data["label"])

    work: dict[str, Callable[[], None]] = {"model": model_step, "training_views": training_views,
                                           "probe_view": probe_view}  # fmt: skip
    flops = {}
    for name, fn in work.items():
        fn()  # warm-up (and the features the training_views probe reads)
        with FlopCounterMode(display=False) as counter:
            fn()
        flops[name] = counter.get_total_flops()
    times: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, fn in work.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rows = []
    for name in ("training_views", "probe_view"):
        ratios = [probe / step for probe, step in zip(times[name], times["model"], strict=True)]
        common = {"config": f"resnet18 32px batch {batch}", "pipeline": name}
        rows.append({**common, "measure": "probe_flops_ratio", "value": flops[name] / flops["model"]})
        rows.append({**common, "measure": "probe_time_ratio", "value": statistics.median(ratios)})
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the timed ones")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--log-every", type=int, default=20, help="log_every_n_steps (the configs' value)")
    parser.add_argument("--probe-batch", type=int, default=32, help="ResNet-18 batch of the probe-cost rows")
    parser.add_argument("--measures", default="overhead,counts,probe", help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    measures = set(args.measures.split(","))
    torch.set_num_threads(1)
    batches = make_batches(args.warmup + args.steps + 1, args.batch)
    config = f"linear encoder, batch {args.batch}, log_every_n_steps {args.log_every}"
    rows: list[dict[str, Any]] = []
    if "overhead" in measures:
        plain, lightning, no_probe, bare = [], [], [], []
        for _ in range(args.rounds):  # interleaved: A, B, C, D, A, B, C, D ...
            plain.append(ms_per_step(plain_steps(batches), args.warmup, args.steps))
            clock = lightning_steps(batches, args.log_every, [])
            lightning.append(ms_per_step(clock.starts, args.warmup, args.steps))
            clock = lightning_steps(batches, args.log_every, [], probe=False)
            no_probe.append(ms_per_step(clock.starts, args.warmup, args.steps))
            clock = lightning_steps(batches, args.log_every, [], bare=True)
            bare.append(ms_per_step(clock.starts, args.warmup, args.steps))
        figures = [("step_ms", "plain_pytorch", statistics.median(plain))]
        pipelines = (("lightning", lightning), ("lightning_no_probe", no_probe), ("lightning_bare", bare))
        for pipeline, times in pipelines:
            overhead = statistics.median(b - a for a, b in zip(plain, times, strict=True))
            figures += [("step_ms", pipeline, statistics.median(times)), ("overhead_ms", pipeline, overhead)]
        for measure, pipeline, figure in figures:
            rows.append({"config": config, "measure": measure, "pipeline": pipeline, "ms_per_step": figure})
    if "counts" in measures:
        counts = op_counts_per_step(batches, args.warmup, args.steps, args.log_every)
        for pipeline, (syncs, launches) in counts.items():
            for measure, value in (("host_syncs_per_step", syncs), ("launching_ops_per_step", launches)):
                rows.append({"config": config, "measure": measure, "pipeline": pipeline, "value": value})
    if "probe" in measures:
        rows += probe_costs(args.probe_batch, args.rounds)
    for row in rows:
        figure = row.get("ms_per_step", row.get("value"))
        print(f"{row['measure']:24s} {row['pipeline']:18s} {figure:10.4g}   ({row['config']})")
    if args.json:
        environment = {
            "torch": torch.__version__, "lightning": pl.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "rounds": args.rounds, "command": " ".join(sys.argv),
        }  # fmt: skip
        args.json.write_text(json.dumps({"environment": environment, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
