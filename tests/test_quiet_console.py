"""A smoke fit and its resume print no warning or advert a user cannot act on (quiet_console.py).

Runs train.py as a user does (a subprocess, default warning settings, W&B offline) and fails on any
warning-like line outside ALLOWED, each entry with the reason it stays.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_helpers import REPOSITORY, write_image_folder

# Lines that look like a warning, an advert or noise: Python's and Lightning's warning format
# (`path.py:LINE: message`), W&B's `wandb: WARNING`, and the messages the issue listed.
NOISE = re.compile(r"\.py:\d+: |warn|deprecat|💡|\btip\b|no seed found|flops", re.IGNORECASE)

ALLOWED = {
    # Lightning 2.6's WandbLogger always passes anonymous=None to wandb.init, and wandb >= 0.2x warns
    # whenever the argument is given; only a private attribute of the logger could stop it.
    "wandb: WARNING The anonymous setting has no effect": "Lightning passes a removed W&B argument",
    # On machines with more cores than the smoke overlay's 2 workers; the user can raise --data.num_workers.
    "does not have many workers which may be a bottleneck": "a user can act on it",
    # A train/val folder's test/* is its val/, where the best checkpoint was selected; the line says how
    # to get an unbiased test split (add test/, or rename val/ to test/).
    "has no test/ folder, so test/* reports on val/": "a user can act on it",
}


def noise_lines(output: str) -> list[str]:
    return [
        line for line in output.splitlines()
        if NOISE.search(line) and not any(allowed in line for allowed in ALLOWED)
    ]


def run_train(args: list[str], cwd: Path) -> str:
    environment = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    for inherited in ("SIMCLR_RUN_DIR", "SIMCLR_WANDB_RUN_ID", "PYTHONWARNINGS", "PL_GLOBAL_SEED"):
        environment.pop(inherited, None)
    done = subprocess.run(
        [sys.executable, str(REPOSITORY / "train.py"), *args],
        cwd=cwd, env=environment, capture_output=True, text=True, timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_the_noise_pattern_catches_what_the_issue_listed() -> None:
    """The check itself must not be blind: each message the issue quoted is caught."""
    quoted = [
        "/site-packages/lightning_fabric/utilities/seed.py:44: No seed found, seed set to 0",
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
        "pytorch_lightning/utilities/_pytree.py:21: `isinstance(treespec, LeafSpec)` is deprecated",
        "Total FLOPs: 0",
        "wandb: WARNING Something new",
    ]
    assert noise_lines("\n".join(quoted)) == quoted


@pytest.mark.slow
def test_smoke_fit_and_resume_print_no_unactionable_warning(tmp_path: Path) -> None:
    # 4 batches of 32 at 32 px (cpu-smoke.yaml asks for 8), 4 classes.
    images = write_image_folder(tmp_path / "images", ("a", "b", "c", "d"), 32, val_per_class=8, image_side=32)
    run = tmp_path / "run"
    smoke = [
        "--config", str(REPOSITORY / "configs" / "imagefolder.yaml"),
        "--config", str(REPOSITORY / "configs" / "cpu-smoke.yaml"),
        "--data.root", str(images), "--trainer.default_root_dir", str(run),
    ]
    # Validates and stops at step 3 of 4: the resume starts mid-epoch, where Lightning warned.
    stop_mid_epoch = ["--trainer.max_steps", "3", "--trainer.val_check_interval", "3"]
    fit = run_train(["fit", *smoke, *stop_mid_epoch], tmp_path)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    resume = ["fit", "--config", str(run / "config.yaml"), "--ckpt_path", "last", "--trainer.max_steps", "6"]
    resumed = run_train(resume, tmp_path)
    assert noise_lines(fit) == [] and noise_lines(resumed) == []
    assert "Resuming at step 3: the learning-rate schedule is re-planned" in resumed
