"""The command line of the template: LightningCLI with the pieces every SimCLR run needs.

Each run writes into its own folder (``trainer.default_root_dir``, by default ``runs/<timestamp>``):
the resolved ``config.yaml``, ``checkpoints/`` and the W&B files, so no run overwrites another.
"""

from __future__ import annotations

import os
import sys
import time
from argparse import RawDescriptionHelpFormatter
from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse import DefaultHelpFormatter, Namespace, lazy_instance
from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.plugins.io import CheckpointIO

from callbacks import KNNMonitor, OnlineLinearProbe, RankMeMonitor, TrainingCurves, ViewPairsGrid
from callbacks.finite_loss import StopOnNonFiniteLoss
from callbacks.preemption import CheckpointOnStop
from callbacks.progress_bar import ReadableProgressBar
from callbacks.run_checkpoint import RunCheckpoint
from callbacks.run_summary import RunSummary
from callbacks.throughput import ViewsPerSecond
from data_help import add_help_with_data_options
from datamodules import SimCLRDataModule
from help_text import NO_PREDICT, TRAIN_DESCRIPTION, TRAIN_SUBCOMMANDS
from lightning_modules.simclr import SimCLR
from quiet_console import silence_known_noise
from reliability.checkpoint_io import AtomicCheckpointIO
from reliability.config_files import check_config_files
from reliability.errors import UserError, parser_kwargs_raising_errors, reported_as_one_line
from reliability.fit_settings import check_devices_exist, check_fit_trains, check_resume_keeps_the_method
from reliability.model_checks import check_encoder_takes, check_encoder_takes_small_views
from reliability.process_group import destroy_process_group_if_any
from reliability.run_config import SaveAndLogConfig, place_logs_in_run_dir
from reliability.run_folder import (
    CONFIG_FILENAME,
    RUN_DIR_ENV,
    WANDB_ID_ENV,
    newest_checkpoint,
    note_resumed_config,
    prepare_checkpoint_paths,
    release_run_dir,
    requeued_run_dir,
    resolve_last_checkpoint,
    resolve_run_dir,
    resolve_wandb_run_id,
    saved_wandb_id,
)
from reliability.stop_signals import sigterm_exits
from reliability.wandb_mode import choose_wandb_mode

# Checkpoint hyperparameters that change the shape of the weights.
ARCHITECTURE_HPARAMS = (
    "backbone", "cifar_stem", "image_size", "projection_hidden_dim", "projection_dim", "projection_layers",
    "projection_batchnorm",
)
# Checkpoint hyperparameters that say how this machine computes a step, not what is trained: a resumed run
# takes them from its own command line (a smaller GPU needs smaller micro-batches), not from the checkpoint.
MACHINE_HPARAMS = ("micro_batch_size",)


class SimCLRCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Lightning's, less predict: SimCLR trains no classifier to predict with (help_text.NO_PREDICT)."""
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_help_with_data_options(parser)  # the subcommand parsers are made with add_help=False
        # The datamodule is the single source of the image size and the global batch.
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        parser.link_arguments("data.batch_size", "model.batch_size", apply_on="instantiate")
        # Added as their own config sections (not trainer.callbacks) so that a config file listing
        # extra callbacks cannot silently drop the probe or the checkpointing.
        parser.add_lightning_class_args(OnlineLinearProbe, "probe")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/probe_top1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "epoch{epoch:03d}-top1_{val/probe_top1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                # Both sections write last.ckpt; versioning would make them write last.ckpt and last-v1.ckpt.
                "checkpoint.enable_version_counter": False,
            }
        )
        # Periodic last.ckpt within epochs: at most every_n_train_steps steps are lost to a crash.
        parser.add_lightning_class_args(RunCheckpoint, "step_checkpoint")
        parser.set_defaults(
            {
                "step_checkpoint.every_n_train_steps": 500,
                "step_checkpoint.save_top_k": 0,
                "step_checkpoint.save_last": True,
                "step_checkpoint.enable_version_counter": False,
            }
        )
        # Evaluation while training and the pictures of a run (README.md, Evaluation).
        parser.add_lightning_class_args(KNNMonitor, "knn_monitor")
        parser.add_lightning_class_args(RankMeMonitor, "rankme")
        parser.add_lightning_class_args(TrainingCurves, "curves")
        parser.add_lightning_class_args(ViewPairsGrid, "view_pairs")
        parser.add_argument(
            "--test_after_fit", type=bool, default=True,
            help="after fit, test the final weights once (test/probe_top1, test/knn_top1)",
        )  # fmt: skip

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        for name, value in self._configured_machine_hparams.items():
            config.model[name] = value  # LightningCLI copied the checkpoint's over them after parsing
        trainer = config.trainer
        requeued = requeued_run_dir(trainer.default_root_dir) if self.subcommand == "fit" else None
        if requeued is not None and config.get("ckpt_path") is None and not os.environ.get(RUN_DIR_ENV):
            trainer.default_root_dir = str(requeued)
            config.ckpt_path = newest_checkpoint(requeued, config.checkpoint.dirpath)
        resuming = self.subcommand == "fit" and (config.get("ckpt_path") is not None or requeued is not None)
        if self.subcommand == "fit" and config.get("ckpt_path") == "last" and not os.environ.get(RUN_DIR_ENV):
            resolve_last_checkpoint(trainer.default_root_dir, config.checkpoint.dirpath)
        check_devices_exist(trainer.accelerator, trainer.devices)
        if self.subcommand == "fit":
            check_fit_trains(trainer)
        turn_on_probe_view(config)
        # fast_dev_run writes nothing (Lightning saves no config.yaml for it; RunCheckpoint, the pictures
        # and the SIGTERM checkpoint skip it), so a real run can follow it into the same folder.
        dry_run = bool(trainer.get("fast_dev_run"))
        run_dir = str(resolve_run_dir(self.subcommand, trainer.default_root_dir, resuming, dry_run))
        trainer.default_root_dir = run_dir
        if trainer.enable_progress_bar is False:
            # The default Rich bar would make Lightning reject `--trainer.enable_progress_bar false`.
            defaults = self.trainer_defaults.get("callbacks", [])
            self.trainer_defaults["callbacks"] = [c for c in defaults if not isinstance(c, RichProgressBar)]
        if resuming:
            # Keep the config the run started with; the resumed invocation's goes beside it.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.save_config_kwargs["config_filename"] = f"config-resumed-{stamp}.yaml"
            note_resumed_config(Path(run_dir) / self.save_config_kwargs["config_filename"])
        place_logs_in_run_dir(trainer.logger, run_dir)
        logger = trainer.logger
        if isinstance(logger, Namespace) and logger.class_path.endswith("WandbLogger"):
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            if self.subcommand == "fit":
                configured_id = saved_wandb_id(requeued) if requeued else logger.init_args.get("id")
                logger.init_args.id = resolve_wandb_run_id(resuming, configured_id)
                logger.init_args.resume = "allow"
            else:
                # An evaluation is its own W&B run, even when it reads the trained run's config.yaml.
                logger.init_args.id = None
        for section in (config.checkpoint, config.step_checkpoint):
            if section.dirpath is None:
                section.dirpath = str(Path(run_dir) / "checkpoints")

    def before_fit(self) -> None:
        # What the datamodule worked out itself (an image folder's native size and pixel statistics, the
        # held-out count in effect) goes into the config.yaml saved at the start of fit, so a rerun or
        # evaluate.py need not re-estimate and validates on the same split.
        resolved = getattr(self.datamodule, "resolved_arguments", None)
        if callable(resolved):
            init_args = self.config[self.subcommand].data.init_args
            for name, value in resolved().items():
                if init_args.get(name) is None:
                    init_args[name] = value
        self._check_checkpoint_fits()
        # Checked here, before DDP starts one process per device, rather than in each of them.
        encoder, backbone = self.model.encoder, self.model.hparams.backbone
        check_encoder_takes(encoder, self.datamodule.image_size, backbone)
        check_encoder_takes_small_views(encoder, getattr(self.datamodule, "multi_crop", None), backbone)
        global_batch, world_size = self.datamodule.batch_size, self.trainer.world_size
        if global_batch % world_size != 0:
            smaller = max(world_size, global_batch // world_size * world_size)
            raise UserError(
                f"--data.batch_size {global_batch} (the global batch) is not divisible by the {world_size} "
                f"devices x nodes; use a multiple of {world_size}, e.g. {smaller} or {smaller + world_size}."
            )

    def after_fit(self) -> None:
        """The test split, evaluated once with the final weights after val/* has done the selecting.

        A run stopped by SIGTERM or a non-finite loss never gets here; an interrupted one is skipped.
        """
        if self.config[self.subcommand].get("test_after_fit", True) and not self.trainer.interrupted:
            fit_metrics = dict(self.trainer.callback_metrics)
            self.trainer.test(self.model, datamodule=self.datamodule)
            # test() starts its metrics afresh; fit's (val/*, train/*) stay readable beside test/*.
            tested = self.trainer.callback_metrics
            tested.update({name: value for name, value in fit_metrics.items() if name not in tested})

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Refuses a checkpoint whose architecture differs from the configured one, right after parsing.

        Checked here because LightningCLI next copies the checkpoint's model settings over the
        configured ones (its ckpt_path handling), after which nothing would differ: `--config
        configs/cifar10.yaml --ckpt_path resnet50.ckpt` would silently train a ResNet-50 where the
        config says ResNet-18. tests/test_errors.py fails if Lightning moves that copy before this hook.
        The configured MACHINE_HPARAMS are kept here and put back over the copy in before_instantiate_classes.
        """
        super().parse_arguments(parser, args)
        self._configured_machine_hparams: dict[str, object] = {}
        subcommand = self.config.get("subcommand")
        if subcommand:  # a copied or moved run folder reads and writes only itself
            prepare_checkpoint_paths(self.config[subcommand])
            model = self.config[subcommand].model
            self._configured_machine_hparams = {name: model.get(name) for name in MACHINE_HPARAMS}
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            saved = saved_hyperparameters(ckpt_path)
            configured = dict(self.config[subcommand].model)
            # image_size is linked from the datamodule later; before_<subcommand> compares the weights.
            names = [name for name in ARCHITECTURE_HPARAMS if name != "image_size"]
            if any(name in saved and saved[name] != configured.get(name) for name in names):
                raise UserError(describe_checkpoint_mismatch(ckpt_path, saved, configured, names))

    def instantiate_trainer(self, **kwargs: object) -> Trainer:
        """Atomic checkpoint writes for every run, unless a config names its own CheckpointIO plugin."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        plugins = kwargs.pop("plugins", config.trainer.get("plugins")) or []
        plugins = list(plugins) if isinstance(plugins, list | tuple) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(plugins=plugins, **kwargs)

    def before_validate(self) -> None:
        self._check_checkpoint_fits()

    def before_test(self) -> None:
        self._check_checkpoint_fits()

    def _check_checkpoint_fits(self) -> None:
        """A checkpoint whose weights do not fit the model fails here in one line, not in load_state_dict.

        Catches what parse_arguments cannot see: an image size (linked from the datamodule) that
        changes the stem, or a checkpoint without hyperparameters.
        """
        config = self.config[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last" and self.subcommand == "fit":
            run_dir, checkpoint_dir = config.trainer.default_root_dir, config.checkpoint.dirpath
            ckpt_path = str(resolve_last_checkpoint(run_dir, checkpoint_dir))
        if not ckpt_path or not Path(ckpt_path).is_file():
            return  # "best", "hpc" or nothing: Lightning resolves and checks those itself
        # mmap: the shapes without reading every tensor.
        checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True)
        saved_shapes = {name: tuple(value.shape) for name, value in checkpoint.get("state_dict", {}).items()}
        model_shapes = {name: tuple(value.shape) for name, value in self.model.state_dict().items()}
        if saved_shapes != model_shapes:
            saved = checkpoint.get("hyper_parameters", {})
            raise UserError(describe_checkpoint_mismatch(ckpt_path, saved, dict(self.model.hparams)))
        if self.subcommand == "fit":
            check_resume_keeps_the_method(
                ckpt_path, checkpoint, dict(self.model.hparams), dict(self.datamodule.hparams),
                self.trainer.accumulate_grad_batches,
            )  # fmt: skip


def turn_on_probe_view(config: Namespace) -> None:
    """`--probe.features probe_view` alone is enough: the datamodule then makes the view that probe reads.

    Not a jsonargparse link: a link would silently override an explicit `--data.probe_view true`, which
    other readers of the view may need with the default probe. Datamodules without the argument are
    left alone (the probe then says which argument is missing).
    """
    init_args = config.data.get("init_args") if isinstance(config.get("data"), Namespace) else None
    takes_it = isinstance(init_args, Namespace) and "probe_view" in init_args
    if config.probe.features == "probe_view" and takes_it:
        init_args.probe_view = True


def refuse_predict(args: Sequence[str]) -> None:
    """Lightning's predict subcommand, dropped from SimCLRCLI, says where prediction lives instead."""
    if args[:1] == ["predict"]:
        raise UserError(NO_PREDICT)


def saved_hyperparameters(ckpt_path: str) -> dict:
    return torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})


def describe_checkpoint_mismatch(
    ckpt_path: str | None, saved: dict, model_hparams: dict, names: Sequence[str] = ARCHITECTURE_HPARAMS
) -> str:
    """Which architecture settings differ between a checkpoint and the model it is loaded into."""
    differences = [
        f"{name} {saved[name]!r} (this run: {model_hparams.get(name)!r})"
        for name in names
        if name in saved and saved[name] != model_hparams.get(name)
    ]
    found = "; it was saved with " + ", ".join(differences) if differences else ""
    return (
        f"Checkpoint '{ckpt_path}' does not fit this model{found}. Use the settings of the run that "
        "saved it: --config runs/RUN/config.yaml, or the matching --model.* flags."
    )


def parser_settings() -> dict[str, object]:
    """Descriptions atop each help, and parsing errors raised (then printed as one line) instead of usage."""
    settings = parser_descriptions()
    for key, value in parser_kwargs_raising_errors(tuple(SimCLRCLI.subcommands())).items():
        settings[key] = {**settings.get(key, {}), **value} if isinstance(value, dict) else value  # type: ignore[dict-item]
    return settings


def parser_descriptions() -> dict[str, object]:
    """The template's overview atop `train.py --help` and each subcommand's own line atop its help."""
    formatter = {"formatter_class": DescriptionAsWritten}
    kwargs: dict[str, object] = {"description": TRAIN_DESCRIPTION, **formatter}
    for name, line in TRAIN_SUBCOMMANDS.items():
        kwargs[name] = {"description": f"{line}.\n\n{TRAIN_DESCRIPTION}", "add_help": False, **formatter}
    return kwargs


class DescriptionAsWritten(RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keeps the line breaks of the description (the command examples); options are formatted as usual."""


def cli_main(args: list[str] | None = None, run: bool = True) -> SimCLRCLI:
    """Entry point of train.py; tests call it in-process with an argument list."""
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        # Only workers that Lightning launched for this run may inherit its folder; a second run
        # started from the same Python process (a notebook, a test) gets a folder of its own.
        os.environ.pop(RUN_DIR_ENV, None)
        os.environ.pop(WANDB_ID_ENV, None)
    silence_known_noise()
    # TF32 matmuls on Ampere+ GPUs: a large speed-up at a precision SimCLR does not notice.
    torch.set_float32_matmul_precision("high")
    try:
        with reported_as_one_line(), sigterm_exits():
            refuse_predict(sys.argv[1:] if args is None else args)
            choose_wandb_mode()
            check_config_files(sys.argv[1:] if args is None else args)
            simclr_cli = SimCLRCLI(
                SimCLR,
                SimCLRDataModule,
                subclass_mode_data=True,
                save_config_callback=SaveAndLogConfig,
                # Callbacks listed here are added whatever callbacks a config file lists.
                trainer_defaults={
                    "callbacks": [
                        StopOnNonFiniteLoss(),
                        CheckpointOnStop(),
                        ViewsPerSecond(),
                        RunSummary(),
                        lazy_instance(ReadableProgressBar),
                    ],
                    "logger": {
                        "class_path": "pytorch_lightning.loggers.WandbLogger",
                        "init_args": {"project": "simclr"},
                    },
                    # RunSummary prints the parameter count; Lightning's table adds a FLOPs column of zeros.
                    "enable_model_summary": False,
                },
                # An explicit seed: the same as Lightning's default (0), without its "No seed found" warning.
                seed_everything_default=0,
                parser_kwargs=parser_settings(),
                save_config_kwargs={"config_filename": CONFIG_FILENAME, "save_to_log_dir": False},
                args=args,
                run=run,
            )
    except BaseException:
        # Also after an error (marked as failed): a later invocation in this process must not log into it.
        finish_wandb_run(exit_code=1)
        release_run_dir(failed=True)
        raise
    if run:
        finish_wandb_run()
        destroy_process_group_if_any()
    release_run_dir()
    return simclr_cli


def finish_wandb_run(exit_code: int = 0) -> None:
    """Close the W&B run a subcommand opened, so the next one in this process starts its own.

    WandbLogger leaves its run open after fit (for a test that might follow in the same script); a
    CLI invocation is one run, and a later invocation would otherwise log into it.
    """
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
