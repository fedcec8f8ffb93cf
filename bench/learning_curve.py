"""Learning curves on CPU: our default pipeline against a plain-PyTorch reference, kNN after every epoch.

(a) ours:      ImageFolderDataModule (its default training views) + the SimCLR LightningModule + Trainer.
(b) reference: the peers' PIL views (torchvision.transforms v1, as lightly's and solo-learn's CIFAR
               recipes write them) and bench/reference_simclr.py's step (lightly's NT-Xent loss and
               projection head, MoCo v3's LARS, the paper's warm-up + cosine schedule; the step
               tests/lightning_modules/test_reference_trajectory.py holds ours equal to) in a plain loop.
Both: the same backbone, recipe (configs/cifar10.yaml scaled down: LARS, base_lr 0.5 x batch / 256,
temperature 0.5, weight decay 1e-6, jitter strength 0.5, no blur), steps, and CIFAR-10 JPEG subset
(the first N files of each class, sorted by name). After every epoch, and at random initialisation,
the encoder is scored by weighted kNN (k=200, T=0.1; evaluation/knn.py) of the test subset against
the training subset, both through the same deterministic evaluation view.

The table gives, per epoch, each pipeline's mean and seed range, whether our mean lies inside the
reference's range, and the paired per-seed difference (seed s starts both from the same weights) with
its 95% t-interval: the range test alone is a coin toss with few seeds.

Full run (10 seeds, sized for about 30 minutes on 2 idle cores; prints a Markdown table, --append adds it
to a file, --save keeps the curves as JSON and --table_from prints a saved run's table again):
    python bench/learning_curve.py --data ../shared/data/cifar10 --save curves.json --append BENCHMARKS.md
Smoke run (seconds): python bench/learning_curve.py --smoke
Needs lightly (requirements.txt, test-only).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import scipy.stats
import torch
import torchvision
from lightly.loss import NTXentLoss
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reference_simclr import projection_head, training_step, warmup_cosine_lr  # noqa: E402
from datamodules import ImageFolderDataModule  # noqa: E402
from evaluation.knn import knn_predict  # noqa: E402
from lightning_modules.backbones import build_backbone  # noqa: E402
from lightning_modules.simclr import SimCLR  # noqa: E402

RECIPE = dict(temperature=0.5, base_lr=0.5, weight_decay=1e-6, momentum=0.9)
JITTER = 0.5


def subset_folder(source: Path, destination: Path, train_per_class: int, test_per_class: int) -> Path:
    """destination/{train,test}/<class>/ = symlinks to the first files of each class, sorted by name."""
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            target = destination / split / class_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for file in sorted(class_dir.iterdir())[:count]:
                (target / file.name).symlink_to(file.resolve())
    return destination


class Files(Dataset):
    """(transform(PIL image), label) of an ImageFolder layout, in ImageFolder's order."""

    def __init__(self, split_dir: Path, transform) -> None:
        self.samples = torchvision.datasets.ImageFolder(str(split_dir)).samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


class TwoViews:
    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)


def peer_views(size: int, mean, std) -> T.Compose:
    """The SimCLR views as the peers write them with PIL transforms (colour strength 0.5, no blur)."""
    s = JITTER
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.08, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])  # fmt: skip


@torch.no_grad()
def knn_top1(encoder: nn.Module, root: Path, mean, std, batch: int, workers: int) -> float:
    """Weighted kNN (k=200, T=0.1) of the test subset against the training subset; evaluation view."""
    view = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
    was_training = encoder.training
    encoder.eval()
    features = {}
    for split in ("train", "test"):
        loader = DataLoader(Files(root / split, view), batch_size=batch, num_workers=workers)
        parts = [(encoder(images), labels) for images, labels in loader]
        features[split] = (torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts]))
    encoder.train(was_training)
    (bank, bank_labels), (queries, labels) = features["train"], features["test"]
    scores = knn_predict(bank, bank_labels, queries, int(bank_labels.max()) + 1, k=200, temperature=0.1)
    return float((scores.argmax(dim=1) == labels).float().mean())


def reference_run(args, root: Path, mean, std, seed: int) -> list[float]:
    torch.manual_seed(seed)
    encoder, width = build_backbone(args.backbone, args.image_size)
    network = nn.Sequential(encoder, projection_head(width)).train()
    criterion = NTXentLoss(temperature=RECIPE["temperature"])
    data = Files(root / "train", TwoViews(peer_views(args.image_size, mean, std)))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        data, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        generator=generator, persistent_workers=args.workers > 0,
    )  # fmt: skip
    total, warmup = args.epochs * len(loader), round(args.warmup_epochs * len(loader))
    buffers: dict = {}
    curve = [knn_top1(encoder, root, mean, std, args.batch_size, args.workers)]
    step = 0
    for _ in range(args.epochs):
        for (view1, view2), _ in loader:
            lr = warmup_cosine_lr(step, total, warmup, peak=RECIPE["base_lr"] * args.batch_size / 256)
            training_step(
                network, criterion, view1, view2, buffers, lr, RECIPE["weight_decay"], RECIPE["momentum"]
            )
            step += 1
        curve.append(knn_top1(encoder, root, mean, std, args.batch_size, args.workers))
    return curve


class KNNEachEpoch(pl.Callback):
    def __init__(self, root: Path, mean, std, batch: int, workers: int) -> None:
        self.root, self.mean, self.std, self.batch, self.workers = root, mean, std, batch, workers
        self.curve: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self._measure(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._measure(pl_module)

    def _measure(self, pl_module) -> None:
        encoder = pl_module.encoder
        self.curve.append(knn_top1(encoder, self.root, self.mean, self.std, self.batch, self.workers))


def our_run(args, root: Path, mean, std, seed: int) -> list[float]:
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule = ImageFolderDataModule(
        str(root), batch_size=args.batch_size, num_workers=args.workers, jitter_strength=JITTER,
        blur=False, mean=mean, std=std, pin_memory=False, val_holdout=0, view_path=args.view_path,
    )  # fmt: skip
    model = SimCLR(
        backbone=args.backbone, image_size=datamodule.image_size, batch_size=args.batch_size,
        warmup_epochs=args.warmup_epochs, optimizer="lars", **RECIPE,
    )  # fmt: skip
    knn = KNNEachEpoch(root, mean, std, args.batch_size, args.workers)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=args.epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, callbacks=[knn], default_root_dir=tempfile.mkdtemp(prefix="learning-curve-"),
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    return knn.curve


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values) * 100
    spread = f" [{min(values) * 100:.1f}, {max(values) * 100:.1f}]" if len(values) > 1 else ""
    return f"{mean:.1f}{spread}"


def paired_difference(ours: list[float], reference: list[float]) -> tuple[float, float, float]:
    """Mean of the per-seed differences ours - reference (percentage points) and its 95% t-interval.

    Seed s starts both pipelines from the same weights, so the pairs share their initialisation and
    the interval is narrower than one drawn from two independent samples."""
    differences = [100 * (a - b) for a, b in zip(ours, reference, strict=True)]
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, math.nan, math.nan
    half_width = scipy.stats.t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences)
    half_width /= math.sqrt(len(differences))
    return mean, mean - half_width, mean + half_width


def table(curves: dict[str, list[list[float]]], run: dict) -> str:
    lines = [
        "| epoch | ours: kNN top-1 %, mean [min, max] | reference: same | ours' mean in reference's range "
        "| ours - reference per seed, mean [95% CI] |",
        "| --- | --- | --- | --- | --- |",
    ]
    for epoch in range(len(curves["ours"][0])):
        ours = [curve[epoch] for curve in curves["ours"]]
        reference = [curve[epoch] for curve in curves["reference"]]
        inside = min(reference) <= statistics.fmean(ours) <= max(reference)
        difference, low, high = paired_difference(ours, reference)
        label = "0 (random init)" if epoch == 0 else str(epoch)
        lines.append(
            f"| {label} | {summary(ours)} | {summary(reference)} | {'yes' if inside else 'no'} "
            f"| {difference:+.1f} [{low:+.1f}, {high:+.1f}] |"
        )
    lines += [
        "",
        f"Seeds {run['seeds']}; {run['train_per_class']} train / {run['test_per_class']} test images "
        "per class; "
        f"{run['backbone']} at {run['image_size']} px; batch {run['batch_size']}; {run['epochs']} epochs "
        f"({run['warmup_epochs']} warm-up); our view path {run.get('view_path', 'auto')}; "
        f"{run['threads']} thread(s), {run['workers']} loader worker(s). "
        f"Wall time: ours {run['seconds']['ours']:.0f} s, reference {run['seconds']['reference']:.0f} s. "
        f"Load average at the end {run['load']}; {run['machine']}; {run['versions']}.",
        f"Command: `{run['command']}`",
    ]
    return "\n".join(lines)


def run_record(args, seconds: dict[str, float]) -> dict:
    """What the table's footnote states about the run, kept with the curves in --save's file."""
    load = os.getloadavg()
    return {
        **{key: getattr(args, key) for key in (
            "seeds", "train_per_class", "test_per_class", "backbone", "image_size", "batch_size", "epochs",
            "warmup_epochs", "threads", "workers", "view_path")},
        "seconds": seconds,
        "load": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"pytorch-lightning {pl.__version__}, lightly {importlib.metadata.version('lightly')}",
        "command": f"python {' '.join(sys.argv)}",
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--train_per_class", type=int, default=250)
    parser.add_argument("--test_per_class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warmup_epochs", type=float, default=1.0)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--backbone", default="tiny_resnet")
    # 10 seeds: with 3, two identical pipelines put one mean outside the other's range at about a third
    # of the epochs by chance alone.
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--view_path", default="auto", choices=["auto", "batched", "per_image"],
        help="our pipeline's --data.view_path: per_image compares our other view path with the reference",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
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
        args.train_per_class, args.test_per_class, args.epochs, args.batch_size = 8, 4, 1, 32
        args.seeds, args.workers, args.warmup_epochs = args.seeds[:2], 0, 0.5
    torch.set_num_threads(args.threads)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)  # CIFAR-10's, for both pipelines
    with tempfile.TemporaryDirectory(prefix="cifar10-subset-") as folder:
        root = subset_folder(args.data, Path(folder), args.train_per_class, args.test_per_class)
        curves: dict[str, list[list[float]]] = {"ours": [], "reference": []}
        seconds = {"ours": 0.0, "reference": 0.0}
        for seed in args.seeds:  # interleaved, so load changes hit both pipelines alike
            for name, run in (("ours", our_run), ("reference", reference_run)):
                start = time.perf_counter()
                curves[name].append(run(args, root, mean, std, seed))
                seconds[name] += time.perf_counter() - start
                print(f"{name} seed {seed}: {[round(v * 100, 1) for v in curves[name][-1]]}", flush=True)
                if args.save:  # after every run, so an interrupted comparison keeps what it measured
                    record = {"curves": curves, "run": run_record(args, seconds)}
                    args.save.write_text(json.dumps(record, indent=1))
    result = table(curves, run_record(args, seconds))
    print(result)
    if args.append:
        with args.append.open("a") as file:
            heading = f"Learning curves on CPU: ours vs a reference pipeline ({time.strftime('%Y-%m-%d')})"
            file.write(f"\n## {heading}\n\n")
            file.write(result + "\n")


if __name__ == "__main__":
    main()
