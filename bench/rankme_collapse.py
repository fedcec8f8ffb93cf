"""What RankMe does in healthy and in collapsing runs on CPU: the data behind the collapse warning.

Our pipeline (bench/learning_curve.py's recipe and its our_run: ImageFolderDataModule, the SimCLR
module, Lightning) on a CIFAR-10 JPEG subset, once as the recipe says and once per deliberately bad
setting; after every epoch (and at initialisation) the encoder's RankMe of the test subset's features
(evaluation view; lightning_modules/health.py, the value val/rankme logs) and its kNN top-1 (k=200,
T=0.1) against the training subset. callbacks/rankme.py warns below half of the highest RankMe a run
has logged; the table's last column is, per run, the lowest ratio of a RankMe to the highest before it.

    python bench/rankme_collapse.py        # the four runs and their table
    python bench/rankme_collapse.py --smoke
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench.learning_curve as learning_curve  # noqa: E402
from bench.report import load_average, machine_info  # noqa: E402
from lightning_modules.health import rankme  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# Deliberate changes to the recipe (bench/learning_curve.py's RECIPE): base_lr 0.5 -> 20, temperature
# 0.5 -> 5 (all negatives weigh alike) and -> 0.02 (a few hard negatives dominate).
VARIANTS = {
    "recipe": {},
    "base_lr x40": {"base_lr": 20.0},
    "temperature 5": {"temperature": 5.0},
    "temperature 0.02": {"temperature": 0.02},
}


@torch.no_grad()
def test_rankme(encoder: torch.nn.Module, root: Path, batch: int) -> float:
    view = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    was_training = encoder.training
    encoder.eval()
    loader = DataLoader(learning_curve.Files(root / "test", view), batch_size=batch)
    features = torch.cat([encoder(images) for images, _ in loader])
    encoder.train(was_training)
    return float(rankme(torch.linalg.svdvals(features.double())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared/data/cifar10"
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--train_per_class", type=int, default=100)
    parser.add_argument("--test_per_class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    settings = argparse.Namespace(
        batch_size=128, workers=0, backbone="tiny_resnet", image_size=32, epochs=args.epochs,
        warmup_epochs=1.0, view_path="auto",
    )  # fmt: skip
    if args.smoke:
        args.train_per_class, args.test_per_class, settings.epochs, settings.batch_size = 8, 4, 1, 32
    torch.set_num_threads(1)
    machine = machine_info(f"python {' '.join(sys.argv)}", torch.device("cpu"))
    measured: list[tuple[float, float]] = []
    knn = learning_curve.knn_top1

    def knn_and_rankme(encoder, root, mean, std, batch, workers) -> float:
        accuracy = knn(encoder, root, mean, std, batch, workers)
        measured.append((accuracy, test_rankme(encoder, root, batch)))
        return accuracy

    learning_curve.knn_top1 = knn_and_rankme  # our_run's per-epoch callback measures both
    rows = []
    with tempfile.TemporaryDirectory(prefix="cifar10-subset-") as folder:
        counts = (args.train_per_class, args.test_per_class)
        root = learning_curve.subset_folder(args.data, Path(folder), *counts)
        for name, change in VARIANTS.items():
            recipe = dict(learning_curve.RECIPE)
            learning_curve.RECIPE.update(change)
            measured.clear()
            learning_curve.our_run(settings, root, MEAN, STD, seed=0)
            learning_curve.RECIPE.clear()
            learning_curve.RECIPE.update(recipe)
            ranks = [rank for _, rank in measured]
            # What the warning compares: each value against the highest before it.
            drop = min(rank / max(ranks[:index]) for index, rank in enumerate(ranks) if index > 0)
            per_epoch = ", ".join(f"{100 * accuracy:.1f} / {rank:.1f}" for accuracy, rank in measured)
            rows.append(f"| {name} | {per_epoch} | {drop:.2f} |")
            print(rows[-1], flush=True)
    print(
        "| run | kNN top-1 % / RankMe: at initialisation, then after each epoch | lowest / highest before |"
    )
    print("| --- | --- | --- |")
    print("\n".join(rows))
    print(
        f"\n{args.train_per_class} train / {args.test_per_class} test images per class; tiny_resnet (128-d "
        f"features) at 32 px, batch {settings.batch_size}, {settings.epochs} epochs, seed 0. Load average "
        f"{machine['load_average_start']} at the start, {load_average()} at the end; {machine['cpu']}, "
        f"{machine['usable_cores']} cores; torch {torch.__version__}. Command: `{machine['command']}`"
    )


if __name__ == "__main__":
    main()
