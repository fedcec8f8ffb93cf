"""The command line of the template: LightningCLI with the pieces every SimCLR run needs.

Each run writes into its own folder (``trainer.default_root_dir``, by default ``runs/<timestamp>``):
the resolved ``config.yaml``, ``checkpoints/`` and the W&B files, so no run overwrites another.
"""

from __future__ import annotations

import netrc
import os
import time
from pathlib import Path

import torch
from jsonargparse import Namespace, lazy_instance
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from callbacks import KNNMonitor, OnlineLinearProbe, TrainingCurves, ViewPairsGrid
from datamodules import SimCLRDataModule
from lightning_modules.simclr import SimCLR

RUNS_ROOT = "runs"
CONFIG_FILENAME = "config.yaml"
# The run folder chosen by the launching process; DDP workers started by Lightning inherit it, so
# every rank writes into the same folder even though each parses the command line on its own.
RUN_DIR_ENV = "SIMCLR_RUN_DIR"
WANDB_HOST = "api.wandb.ai"


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def choose_wandb_mode() -> None:
    """Log online when credentials exist, offline otherwise, unless the user set WANDB_MODE.

    Offline runs need no account and no network; `wandb sync <run folder>/wandb/offline-run-*`
    uploads them later.
    """
    if "WANDB_MODE" not in os.environ and not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"


def _launcher_job_id() -> str | None:
    """An id shared by every process of a job started by SLURM or torchrun, which launch ranks separately."""
    slurm = os.environ.get("SLURM_JOB_ID")
    if slurm:
        return f"slurm-{slurm}"
    torchrun = os.environ.get("TORCHELASTIC_RUN_ID")
    if torchrun and torchrun != "none":
        return f"torchrun-{torchrun}"
    return None


def _fresh_folder(parent: Path, name: str) -> Path:
    folder, suffix = parent / name, 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{name}-{suffix}"
    return folder


def resolve_run_dir(subcommand: str, given: str | None, resuming: bool) -> Path:
    """The folder this run writes into, the same one for every rank of a job.

    fit: `given` (a run folder) or a fresh runs/<timestamp>; a folder that already holds a run is
    only reused to resume it. validate/test: a fresh sub-folder of `given` (typically the run being
    evaluated, when its saved config.yaml is passed back) or of runs/, so evaluations never
    overwrite the run they evaluate.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    stamp = _launcher_job_id() or time.strftime("%Y%m%d-%H%M%S")
    if subcommand == "fit":
        if given is None:
            run_dir = _fresh_folder(Path(RUNS_ROOT), stamp)
        else:
            run_dir = Path(given)
            if (run_dir / CONFIG_FILENAME).exists() and not resuming:
                raise FileExistsError(
                    f"'{run_dir}' already holds a run ({CONFIG_FILENAME} is there). To continue it pass "
                    f"--ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}; to start a new one choose another "
                    "--trainer.default_root_dir or leave it unset for a fresh runs/<timestamp>."
                )
    else:
        run_dir = _fresh_folder(Path(given or RUNS_ROOT), f"{subcommand}-{stamp}")
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


class SimCLRCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The datamodule is the single source of the image size and the global batch.
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.link_arguments("data.batch_size", "model.batch_size", apply_on="instantiate")
        # Added as their own config sections (not trainer.callbacks) so that a config file listing
        # extra callbacks cannot silently drop the probe or the checkpointing.
        parser.add_lightning_class_args(OnlineLinearProbe, "probe")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/probe_top1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "epoch{epoch:03d}-top1_{val/probe_top1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        # Evaluation while training and the pictures of a run (README.md, Evaluation).
        parser.add_lightning_class_args(KNNMonitor, "knn_monitor")
        parser.add_lightning_class_args(TrainingCurves, "curves")
        parser.add_lightning_class_args(ViewPairsGrid, "view_pairs")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        resuming = config.get("ckpt_path") is not None
        run_dir = str(resolve_run_dir(self.subcommand, trainer.default_root_dir, resuming))
        trainer.default_root_dir = run_dir
        if resuming:
            # Keep the config the run started with; the resumed invocation's goes beside it.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.save_config_kwargs["config_filename"] = f"config-resumed-{stamp}.yaml"
        logger = trainer.logger
        if isinstance(logger, Namespace) and logger.class_path.endswith("WandbLogger"):
            # The run folder, also when a saved config names the folder of the run being evaluated:
            # Lightning saves config.yaml into the logger's save_dir.
            logger.init_args.save_dir = run_dir
            Path(run_dir).mkdir(parents=True, exist_ok=True)
        if config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = str(Path(run_dir) / "checkpoints")


def cli_main(args: list[str] | None = None, run: bool = True) -> SimCLRCLI:
    """Entry point of train.py; tests call it in-process with an argument list."""
    choose_wandb_mode()
    # TF32 matmuls on Ampere+ GPUs: a large speed-up at a precision SimCLR does not notice.
    torch.set_float32_matmul_precision("high")
    return SimCLRCLI(
        SimCLR,
        SimCLRDataModule,
        subclass_mode_data=True,
        trainer_defaults={
            "callbacks": [lazy_instance(RichProgressBar)],
            "logger": {
                "class_path": "pytorch_lightning.loggers.WandbLogger",
                "init_args": {"project": "simclr"},
            },
        },
        save_config_kwargs={"config_filename": CONFIG_FILENAME},
        args=args,
        run=run,
    )
