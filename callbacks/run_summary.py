"""One block at the start of a run that says what is being trained, on what, and where results go."""

from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info


class RunSummary(pl.Callback):
    """Prints the model, data, devices, batch sizes and output folders once, on rank 0, when fit starts.

    A mistyped flag (wrong dataset root, one device instead of eight) is cheapest to spot in the first
    seconds; the block gathers what is otherwise scattered over the configuration and the logs.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank_zero_info(run_summary(trainer, pl_module))


def run_summary(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    lines = [f"model    {_model_line(pl_module)}"]
    datamodule = trainer.datamodule
    if datamodule is not None:
        lines.append(f"data     {_data_line(datamodule)}")
    lines.append(
        f"devices  {trainer.num_devices} x {type(trainer.accelerator).__name__.removesuffix('Accelerator')} "
        f"x {trainer.num_nodes} node(s) = world size {trainer.world_size}, "
        f"{type(trainer.strategy).__name__}, precision {trainer.precision}"
    )
    lines.append(f"batch    {_batch_line(trainer, datamodule, pl_module)}")
    lines.append(f"outputs  {_outputs_line(trainer)}")
    width = max(len(line) for line in lines)
    rule = "-" * min(width, 100)
    return "\n".join(["Run summary", rule, *lines, rule])


def _model_line(pl_module: pl.LightningModule) -> str:
    hparams = pl_module.hparams
    parameters = sum(p.numel() for p in pl_module.parameters()) / 1e6
    described = f"{type(pl_module).__name__}, {parameters:.2f} M parameters"
    if "backbone" in hparams:
        described += (
            f", backbone {hparams.backbone} ({getattr(pl_module, 'feature_dim', '?')}-d features), "
            f"projection {hparams.get('projection_dim')}-d, temperature {hparams.get('temperature')}, "
            f"optimizer {hparams.get('optimizer')}"
        )
    return described


def _data_line(datamodule: pl.LightningDataModule) -> str:
    described = f"{type(datamodule).__name__} at '{getattr(datamodule, 'root', '?')}'"
    train = getattr(datamodule, "train_dataset", None)
    if train is not None:
        # The whole split: a streamed training set's length is one rank's share of it (LitData's).
        images = datamodule.train_images() if hasattr(datamodule, "train_images") else train
        described += f", {len(images)} training images"
        held_out = datamodule.held_out_indices() if hasattr(datamodule, "held_out_indices") else None
        if held_out is not None:
            # The validation slice comes out of the training split; say so, or val/* looks like test data.
            described += f" ({len(held_out)} of them held out for val/*, pretrained on without labels)"
    if hasattr(datamodule, "num_classes"):
        described += f", {datamodule.num_classes} classes"
    if hasattr(datamodule, "image_size"):
        described += f", {datamodule.image_size} px"
    multi_crop = getattr(datamodule, "multi_crop", None)
    if multi_crop is not None:
        low, high = multi_crop.crop_scale
        described += f" + {multi_crop.count} small views of {multi_crop.size} px (crops of {low:g}-{high:g})"
    view_path = getattr(datamodule, "view_path_used", None)
    if view_path is not None:
        described += f", views {view_path}"
    return described


def _batch_line(
    trainer: pl.Trainer, datamodule: pl.LightningDataModule | None, pl_module: pl.LightningModule
) -> str:
    global_batch = getattr(datamodule, "batch_size", None)
    described = ""
    if global_batch is not None:
        per_device = global_batch // trainer.world_size
        described = f"global {global_batch} = {trainer.world_size} x {per_device}, "
        micro_batch_size = pl_module.hparams.get("micro_batch_size")
        if micro_batch_size is not None and micro_batch_size < per_device:
            # The loss still contrasts the whole global batch; only the forward passes are smaller.
            described += (
                f"each device in {per_device // micro_batch_size} forward passes of {micro_batch_size} "
                "(--model.micro_batch_size; loss over the whole batch, gradients cached), "
            )
    if trainer.accumulate_grad_batches > 1:
        described += f"{trainer.accumulate_grad_batches} batches accumulated per step, "
    described += (
        f"{trainer.num_training_batches} batches per epoch, {trainer.estimated_stepping_batches} steps in all"
    )
    if trainer.optimizers:
        group = trainer.optimizers[0].param_groups[0]
        described += f", peak learning rate {group.get('initial_lr', group['lr']):.4g}"
    return described


def _outputs_line(trainer: pl.Trainer) -> str:
    described = f"run folder {trainer.default_root_dir}"
    checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
    if checkpoints:
        described += f", checkpoints in {checkpoints[0].dirpath}"
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            mode = os.environ.get("WANDB_MODE", "online")
            described += f", W&B {mode} ({logger.save_dir}/wandb)"
    if not trainer.loggers:
        described += ", no logger"
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        described += f", seed {seed}"
    return described
