#!/bin/bash
# Builds a fresh virtual environment at the floor of requirements.txt (every `>=X` installed as `==X`)
# and runs the whole test suite in it, so the lower bounds README.md states are tested, not guessed.
#   bash scripts/test_floor_env.sh [VENV_DIR] [extra pytest arguments]
# VENV_DIR defaults to /tmp/simclr-floor; it is reused when it exists (delete it to start over).
# Takes a few minutes (torch and its CUDA libraries are large downloads); run it from the repository root.
set -euo pipefail

venv=${1:-/tmp/simclr-floor}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
floor=$(mktemp)
trap 'rm -f "$floor"' EXIT

# torch>=2.11,<3 -> torch==2.11 (pip reads ==2.11 as 2.11.0); lines without a lower bound are kept as they are.
sed -E -e '/^\s*(#|$)/d' -e 's/>=([^,;[:space:]]+)[^;[:space:]]*/==\1/' "$root/requirements.txt" > "$floor"
echo "floor set:"; sed 's/^/  /' "$floor"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet -r "$floor"
"$venv/bin/python" - <<'PY'
import importlib.metadata as metadata
for name in ("torch", "torchvision", "pytorch-lightning", "torchmetrics", "jsonargparse", "wandb"):
    print(f"{name} {metadata.version(name)}")
PY
cd "$root"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
