#!/usr/bin/env bash
# The 100-epoch ResNet-18 CIFAR-10 recipe on one GPU, then kNN and linear top-1 on the test split, appended
# with wall times to BENCHMARKS.md. Run from the repository root on a machine with a GPU:
#
#   bash scripts/cifar10_resnet18_100ep.sh [DATA_ROOT]       # DATA_ROOT: the CIFAR-10 root (default data/cifar10)
#
# configs/cifar10.yaml as it stands (batch 512, LARS, base_lr 0.5, 10 warm-up epochs, bf16), only 100
# epochs instead of 500; val/* is the held-out slice of 5,000 training images, the figures written here come
# from the test split: test/* at the end of fit (final weights), then evaluate.py's kNN (k=200, T=0.1) and
# linear protocols on last.ckpt, whose classifiers train on all 50,000 training images.
set -euo pipefail
DATA_ROOT=${1:-data/cifar10}
RUN=runs/cifar10-resnet18-100ep-$(date +%Y%m%d-%H%M%S)
EXTRA=${EXTRA:-}  # e.g. EXTRA="--data.compile_augment true --model.compile true" (batched views are the default)

# On a CPU the recipe takes days and would append a row measured on the wrong machine: stop instead.
python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
  "scripts/cifar10_resnet18_100ep.sh needs a CUDA GPU (torch.cuda.is_available() is False); run it on a GPU machine.")'

mkdir -p runs
start=$(date +%s)
# shellcheck disable=SC2086
python train.py fit --config configs/cifar10.yaml --data.root "$DATA_ROOT" --trainer.max_epochs 100 \
  --trainer.devices 1 --trainer.logger false --trainer.default_root_dir "$RUN" $EXTRA 2>&1 | tee "$RUN.log"
trained=$(date +%s)
python evaluate.py knn --ckpt "$RUN/checkpoints/last.ckpt" --output_dir "$RUN/eval/knn"
python evaluate.py linear --ckpt "$RUN/checkpoints/last.ckpt" --output_dir "$RUN/eval/linear"
evaluated=$(date +%s)

python - "$RUN" "$((trained - start))" "$((evaluated - trained))" "$EXTRA" <<'EOF'
import json, subprocess, sys, time
import torch, torchvision, pytorch_lightning as pl

run, train_seconds, eval_seconds, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
knn = json.load(open(f"{run}/eval/knn/results.json"))["metrics"]["top1"]
linear = json.load(open(f"{run}/eval/linear/results.json"))["metrics"]
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
with open("BENCHMARKS.md", "a") as file:
    file.write(
        f"\n## CIFAR-10, ResNet-18, 100 epochs ({time.strftime('%Y-%m-%d')}, {gpu})\n\n"
        "| kNN top-1 (k=200, test) | linear top-1 (test) | linear top-5 | pretraining wall time | evaluation wall time |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"| {100 * knn:.2f}% | {100 * linear['top1']:.2f}% | {100 * linear['top5']:.2f}% | "
        f"{train_seconds / 3600:.2f} h | {eval_seconds / 60:.1f} min |\n\n"
        f"Command: `bash scripts/cifar10_resnet18_100ep.sh` (EXTRA='{extra}'), commit {commit}; "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, pytorch-lightning {pl.__version__}; "
        f"run folder {run}.\n"
    )
print(f"kNN {100 * knn:.2f}%, linear {100 * linear['top1']:.2f}%; appended to BENCHMARKS.md")
EOF
