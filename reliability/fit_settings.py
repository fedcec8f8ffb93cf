"""Settings of a fit that would run without doing what the command says: refused in one line, before any work.

A fit that trains no step still tests (an untrained model, reported as test/*) and saves nothing; a
resume with another batch would continue a step count, a schedule and a data position that are all
counted in batches of the old size; a resume with another optimiser, weight decay or momentum would
load the checkpoint's optimiser state, which keeps the old ones (or, for another optimiser, fails at
the first step); a resume with another number of small views (multi-crop) would switch method mid-run;
more GPUs than the machine has fail later in Lightning with a longer message.
"""

from __future__ import annotations

from typing import Any

import torch

from reliability.errors import UserError

# How to ask for a run that trains, per trainer flag that can make it train nothing.
TRAINING_LENGTH_FIXES = {
    "max_epochs": "give the number of passes over the training images, 1 or more",
    "max_steps": "give a positive number of steps, or -1 to let --trainer.max_epochs decide",
    "limit_train_batches": "give a fraction in (0, 1] of each epoch's batches, or a count of 1 or more",
}


def check_fit_trains(trainer: Any) -> None:
    """`trainer`: the parsed trainer section of a fit (a jsonargparse Namespace or a dict)."""
    if trainer.get("fast_dev_run"):
        return  # one step whatever max_epochs and the limits say
    for flag, fix in TRAINING_LENGTH_FIXES.items():
        value = trainer.get(flag)
        if value is not None and not isinstance(value, bool) and value == 0:
            raise UserError(
                f"--trainer.{flag} {value} trains no step: the run would save no checkpoint and report "
                f"test/* of an untrained model. {fix[0].upper()}{fix[1:]}."
            )


def check_resume_keeps_the_batch(
    ckpt_path: str, saved: dict[str, Any], images_per_step: int, batch: int
) -> None:
    """A resume must train with the images per optimiser step of the run it continues.

    `saved`: the checkpoint (only `hyper_parameters` and `lr_schedulers` are read). Checkpoints from
    before the schedule recorded its images per step have only the global batch to compare.
    """
    schedules = saved.get("lr_schedulers") or [{}]
    saved_images = schedules[0].get("images_per_step")
    saved_batch = saved.get("hyper_parameters", {}).get("batch_size")
    if saved_images is not None and saved_images != images_per_step:
        was, now = f"{saved_images} images per step", f"{images_per_step}"
    elif saved_images is None and saved_batch is not None and saved_batch != batch:
        was, now = f"--data.batch_size {saved_batch}", f"{batch}"
    else:
        return
    raise UserError(
        f"Checkpoint '{ckpt_path}' was trained with {was}, this resume asks for {now}: its steps, learning-"
        "rate schedule and place in the data are counted in batches of the old size. Resume with the "
        "run's own --data.batch_size and --trainer.accumulate_grad_batches (the batch is global: keep it "
        "on fewer or more devices), or start a new run."
    )


def check_resume_keeps_the_optimiser(
    ckpt_path: str, saved: dict[str, Any], configured: dict[str, Any]
) -> None:
    """`saved`, `configured`: the checkpoint's and this run's model hyperparameters."""
    names = ["optimizer", "weight_decay"]
    if configured.get("optimizer") in ("lars", "sgd"):
        names.append("momentum")  # AdamW has none
    changed = [
        f"--model.{name} {saved[name]} (this resume: {configured.get(name)})"
        for name in names
        if name in saved and saved[name] != configured.get(name)
    ]
    if changed:
        raise UserError(
            f"Checkpoint '{ckpt_path}' was trained with {', '.join(changed)}: a resume continues the "
            "checkpoint's optimiser state, which would keep the old setting. Resume with the run's own "
            "config.yaml values, or start a new run."
        )


def check_resume_keeps_the_views(ckpt_path: str, saved: dict[str, Any], configured: dict[str, Any]) -> None:
    """`saved`, `configured`: the checkpoint's and this run's datamodule hyperparameters (a checkpoint
    from before multi-crop, or of a datamodule without the argument, had none: 0)."""
    was, now = saved.get("num_small_views", 0), configured.get("num_small_views", 0)
    if was != now:
        raise UserError(
            f"Checkpoint '{ckpt_path}' was trained with --data.num_small_views {was} (this resume: {now}): "
            "every later step would train on other views with another loss, and the run would report "
            "neither method. Resume with the run's own config.yaml values, or start a new run."
        )


def check_resume_keeps_the_method(
    ckpt_path: str,
    checkpoint: dict[str, Any],
    model_hparams: dict[str, Any],
    data_hparams: dict[str, Any],
    accumulate_grad_batches: int,
) -> None:
    """Every check a resume of fit makes against the checkpoint it continues."""
    batch = model_hparams["batch_size"]
    check_resume_keeps_the_batch(ckpt_path, checkpoint, batch * accumulate_grad_batches, batch)
    check_resume_keeps_the_optimiser(ckpt_path, checkpoint.get("hyper_parameters", {}), model_hparams)
    check_resume_keeps_the_views(ckpt_path, checkpoint.get("datamodule_hyper_parameters", {}), data_hparams)


def check_devices_exist(accelerator: object, devices: object) -> None:
    """More GPUs than the machine has: say how many there are, before Lightning's longer message."""
    if str(accelerator) not in ("gpu", "cuda") or not str(devices).isdigit():
        return
    requested, available = int(str(devices)), torch.cuda.device_count()
    if requested > available:
        raise UserError(
            f"--trainer.devices {requested} asks for {requested} GPUs but this machine has {available}; "
            f"use --trainer.devices {available} (or -1 for all of them)"
            f"{'' if available else ' or --trainer.accelerator cpu'}."
        )
