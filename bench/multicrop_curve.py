"""Multi-crop against two views at equal compute on CPU: kNN top-1 over the same budget, several seeds.

Both arms are our pipeline (ImageFolderDataModule, batched views, the SimCLR module, Lightning) with
bench/learning_curve.py's recipe (configs/cifar10.yaml scaled down: LARS, base_lr 0.5 x batch / 256,
temperature 0.5, weight decay 1e-6, jitter strength 0.5, no blur) on the same CIFAR-10 JPEG subset:
- multicrop: 2 views of 32 px + --small_views small views (16 px, crops of 0.05-0.14 of the area, the
  datamodule's defaults at 32 px), for --epochs epochs;
- two views: 2 views of 32 px, for as many more steps as one multi-crop step costs more.
Equal budget: before any training, this process times complete training steps of both arms, views made
in the main thread (num_workers=0) + forward + backward + LARS step, one thread, interleaved A, B, A,
B, ... over --rounds rounds of --steps steps, on this process's CPU clock (time the shared machine's
other jobs take is not counted); the two-view arm gets round(multicrop steps x median ratio) steps.
Each arm plans its warm-up (1 epoch) and cosine schedule over its own length, so both end their
schedule within the budget. The encoder is scored by weighted kNN (k=200, T=0.1) of the test subset
against the training subset at 1/4, 1/2, 3/4 and all of the budget (and at initialisation); seed s
starts both arms from the same weights, so differences are paired per seed.

    python bench/multicrop_curve.py --save /tmp/multicrop.json --append BENCHMARKS.md   # the comparison
    python bench/multicrop_curve.py --table_from /tmp/multicrop.json                      # its table again
    python bench/multicrop_curve.py --smoke                                               # seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.learning_curve import (  # noqa: E402
    JITTER,
    RECIPE,
    knn_top1,
    paired_difference,
    subset_folder,
    summary,
)
from bench.report import load_average, machine_info  # noqa: E402
from datamodules import ImageFolderDataModule  # noqa: E402
from lightning_modules.optim import build_optimizer  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10's, for both arms
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
ARMS = ("two_views", "multicrop")


def parts(args, root: Path, small_views: int, workers: int) -> tuple[ImageFolderDataModule, SimCLR]:
    datamodule = ImageFolderDataModule(
        str(root), batch_size=args.batch_size, num_workers=workers, jitter_strength=JITTER, blur=False,
        mean=MEAN, std=STD, pin_memory=False, val_holdout=0, view_path="batched", num_small_views=small_views,
    )  # fmt: skip
    model = SimCLR(
        backbone=args.backbone, image_size=datamodule.image_size, batch_size=args.batch_size,
        warmup_epochs=1.0, optimizer="lars", **RECIPE,
    )  # fmt: skip
    return datamodule, model


class StepTimer:
    """One arm's complete training step outside Lightning, timed on this process's CPU clock."""

    def __init__(self, args, root: Path, small_views: int) -> None:
        datamodule, self.model = parts(args, root, small_views, workers=0)
        datamodule.setup("fit")
        self.loader = datamodule.train_dataloader()
        self.batches = iter(self.loader)
        self.optimizer = build_optimizer("lars", self.model, 0.1, RECIPE["weight_decay"], RECIPE["momentum"])

    def _batch(self) -> dict:
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def seconds(self, steps: int) -> float:
        start = time.process_time()
        for _ in range(steps):
            batch = self._batch()
            loss = self.model.contrastive_step(batch["view1"], batch["view2"], batch.get("small_views")).loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return (time.process_time() - start) / steps


def step_cost_ratio(args, root: Path) -> dict:
    """Median CPU seconds per step of each arm over interleaved rounds, and their ratio."""
    timers = {"two_views": StepTimer(args, root, 0), "multicrop": StepTimer(args, root, args.small_views)}
    for timer in timers.values():
        timer.seconds(2)  # warm-up: first batches, allocator
    rounds: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(args.rounds):
        for arm, timer in timers.items():
            rounds[arm].append(timer.seconds(args.steps))
    medians = {arm: statistics.median(values) for arm, values in rounds.items()}
    ratios = [m / t for m, t in zip(rounds["multicrop"], rounds["two_views"], strict=True)]
    return {"seconds_per_step": medians, "ratio": statistics.median(ratios), "round_ratios": ratios}


class KNNAtSteps(pl.Callback):
    def __init__(self, steps: list[int], root: Path, args) -> None:
        self.steps, self.root, self.args = set(steps), root, args
        self.curve: list[float] = []

    def _measure(self, pl_module) -> None:
        args = self.args
        self.curve.append(knn_top1(pl_module.encoder, self.root, MEAN, STD, args.batch_size, args.workers))

    def on_train_start(self, trainer, pl_module) -> None:
        self._measure(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step in self.steps:
            self._measure(pl_module)


def run_arm(args, root: Path, seed: int, small_views: int, total_steps: int) -> list[float]:
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule, model = parts(args, root, small_views, args.workers)
    knn = KNNAtSteps([max(1, round(f * total_steps)) for f in FRACTIONS], root, args)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=total_steps, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[knn],
        default_root_dir=tempfile.mkdtemp(prefix="multicrop-curve-"),
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return knn.curve


def table(curves: dict[str, list[list[float]]], run: dict) -> str:
    """The seeds both arms finished (a run stopped early saves those), one row per share of the budget."""
    finished = min(len(curves[arm]) for arm in ARMS)
    curves = {arm: curves[arm][:finished] for arm in ARMS}
    seeds = run["seeds"][:finished]
    lines = [
        "| share of the budget | 2 views: kNN top-1 %, mean [min, max] | 2 + "
        f"{run['small_views']} small views: same | multi-crop - 2 views per seed, mean [95% CI] |",
        "| --- | --- | --- | --- |",
    ]
    labels = ["0 (random init)", *(f"{f:g}" for f in FRACTIONS)]
    for index, label in enumerate(labels):
        two = [curve[index] for curve in curves["two_views"]]
        multi = [curve[index] for curve in curves["multicrop"]]
        difference, low, high = paired_difference(multi, two)
        lines.append(
            f"| {label} | {summary(two)} | {summary(multi)} | {difference:+.1f} [{low:+.1f}, {high:+.1f}] |"
        )
    cost = run["step_cost"]
    seconds = cost["seconds_per_step"]
    lines += [
        "",
        f"Seeds {seeds}; {run['train_per_class']} train / {run['test_per_class']} test images per "
        f"class; {run['backbone']} at 32 px, small views 16 px; batch {run['batch_size']}. Step cost "
        f"(CPU s/step, median of {run['rounds']} interleaved rounds of {run['steps']} steps): 2 views "
        f"{seconds['two_views']:.3f}, multi-crop {seconds['multicrop']:.3f}, ratio {cost['ratio']:.2f} "
        f"(rounds {min(cost['round_ratios']):.2f}-{max(cost['round_ratios']):.2f}). Budget: multi-crop "
        f"{run['multicrop_steps']} steps ({run['epochs']} epochs), 2 views {run['two_view_steps']} steps. "
        f"Wall time of the training runs: 2 views {run['seconds']['two_views']:.0f} s, multi-crop "
        f"{run['seconds']['multicrop']:.0f} s. Load average {run['load_start']} at the start, "
        f"{run['load_end']} at the end; {run['machine']}; {run['versions']}.",
        f"Command: `{run['command']}`",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--train_per_class", type=int, default=250)
    parser.add_argument("--test_per_class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=8, help="the multi-crop arm's budget")
    parser.add_argument("--small_views", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--backbone", default="tiny_resnet")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved timing rounds of the step cost")
    parser.add_argument("--steps", type=int, default=4, help="steps per timing round")
    parser.add_argument("--append", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--save", type=Path, help="write the curves and the run's details to this JSON file")
    parser.add_argument("--table_from", type=Path, help="print a --save file's table; no training")
    parser.add_argument("--smoke", action="store_true", help="a run of seconds that checks the script")
    args = parser.parse_args()
    if args.table_from:
        saved = json.loads(args.table_from.read_text())
        print(table(saved["curves"], saved["run"]))
        return
    if args.smoke:
        args.train_per_class, args.test_per_class, args.epochs, args.batch_size = 8, 4, 1, 16
        args.seeds, args.workers, args.rounds, args.steps = args.seeds[:2], 0, 3, 1
    torch.set_num_threads(1)
    machine = machine_info(f"python {' '.join(sys.argv)}", torch.device("cpu"))
    with tempfile.TemporaryDirectory(prefix="cifar10-subset-") as folder:
        root = subset_folder(args.data, Path(folder), args.train_per_class, args.test_per_class)
        cost = step_cost_ratio(args, root)
        print(f"step cost: {json.dumps(cost)}", flush=True)
        steps_per_epoch = args.train_per_class * 10 // args.batch_size
        budget = {"multicrop": args.epochs * steps_per_epoch}
        budget["two_views"] = round(budget["multicrop"] * cost["ratio"])
        curves: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
        seconds = {arm: 0.0 for arm in ARMS}
        for seed in args.seeds:  # interleaved, so load changes hit both arms alike
            for arm in ARMS:
                start = time.perf_counter()
                small = args.small_views if arm == "multicrop" else 0
                curves[arm].append(run_arm(args, root, seed, small, budget[arm]))
                seconds[arm] += time.perf_counter() - start
                print(f"{arm} seed {seed}: {[round(v * 100, 1) for v in curves[arm][-1]]}", flush=True)
            run = {
                **{key: getattr(args, key) for key in (
                    "seeds", "train_per_class", "test_per_class", "epochs", "small_views", "batch_size",
                    "backbone", "rounds", "steps")},
                "step_cost": cost, "multicrop_steps": budget["multicrop"],
                "two_view_steps": budget["two_views"],
                "seconds": seconds, "load_start": machine["load_average_start"], "load_end": load_average(),
                "machine": f"{machine['cpu']}, {machine['usable_cores']} cores",
                "versions": f"torch {torch.__version__}, pytorch-lightning {pl.__version__}",
                "command": machine["command"],
            }  # fmt: skip
            if args.save:  # after every seed, so an interrupted comparison keeps what it measured
                args.save.write_text(json.dumps({"curves": curves, "run": run}, indent=1))
    result = table(curves, run)
    print(result)
    if args.append:
        with args.append.open("a") as file:
            file.write(
                f"\n## Multi-crop vs two views at equal compute, CPU ({time.strftime('%Y-%m-%d')})\n\n"
            )
            file.write(result + "\n")


if __name__ == "__main__":
    main()
