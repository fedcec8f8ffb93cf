"""--model.micro_batch_size under Lightning: without batch-norm (a ViT) the run is the one-pass run, with the
optimiser, schedule, gradient clipping, online probe and resume the Trainer brings; batch-norm against DDP
is tests/distributed/test_micro_batches_ddp.py, the mechanism itself test_gradient_cache.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from callbacks import OnlineLinearProbe
from lightning_modules.simclr import SimCLR

BATCH, STEPS, SIDE = 8, 3, 16
pytestmark = pytest.mark.usefixtures("one_cpu_thread")


class FixedViews(Dataset):
    def __init__(self, images: int = BATCH * STEPS) -> None:
        generator = torch.Generator().manual_seed(0)
        self.view1 = torch.randn(images, 3, SIDE, SIDE, generator=generator)
        self.view2 = torch.randn(images, 3, SIDE, SIDE, generator=generator)

    def __len__(self) -> int:
        return len(self.view1)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"view1": self.view1[index], "view2": self.view2[index], "label": torch.tensor(index % 2)}


class RecordSteps(pl.Callback):
    """Per step: the loss, and the gradient norm before clipping (on_before_optimizer_step precedes it)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.gradient_norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        norms = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
        self.gradient_norms.append(float(torch.stack(norms).norm()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def vit(micro_batch_size: int | None, **overrides: Any) -> SimCLR:
    pl.seed_everything(0, verbose=False)
    arguments: dict[str, Any] = dict(
        backbone="vit_micro", image_size=SIDE, projection_batchnorm=False, temperature=0.2, base_lr=0.5,
        batch_size=BATCH, warmup_epochs=1.0, micro_batch_size=micro_batch_size,
    )  # fmt: skip
    arguments.update(overrides)
    return SimCLR(**arguments)


def fit(model: SimCLR, root: Path, **trainer_args: Any) -> tuple[RecordSteps, OnlineLinearProbe]:
    pl.seed_everything(1, verbose=False)  # the probe's initial weights
    recorder, probe = RecordSteps(), OnlineLinearProbe(lr=0.1, num_classes=2)
    callbacks = [recorder, probe, *trainer_args.pop("callbacks", [])]
    settings: dict[str, Any] = dict(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=root, num_sanity_val_steps=0,
        limit_val_batches=0, precision="64-true", callbacks=callbacks,
    )  # fmt: skip
    settings.update(trainer_args)
    ckpt_path = settings.pop("ckpt_path", None)
    data = DataLoader(FixedViews(), batch_size=BATCH, drop_last=True)
    pl.Trainer(**settings).fit(model, train_dataloaders=data, ckpt_path=ckpt_path)
    return recorder, probe


def assert_same_weights(model: SimCLR, expected: SimCLR) -> None:
    reference = expected.state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-9, msg=name)


@pytest.mark.parametrize(
    ("optimizer", "clip"), [("lars", None), ("sgd", 0.05)], ids=["lars-schedule", "sgd-clipped"]
)
def test_micro_batches_train_a_vit_like_one_pass(tmp_path: Path, optimizer: str, clip: float | None) -> None:
    one_pass, micro = vit(None, optimizer=optimizer), vit(2, optimizer=optimizer)
    expected, expected_probe = fit(one_pass, tmp_path / "one", gradient_clip_val=clip)
    steps, probe = fit(micro, tmp_path / "micro", gradient_clip_val=clip)
    assert len(steps.losses) == STEPS
    assert steps.losses == pytest.approx(expected.losses, rel=1e-6)
    # Clipping acts on the whole batch's gradient, not on the last micro-batch's share of it.
    assert steps.gradient_norms == pytest.approx(expected.gradient_norms, rel=1e-6)
    if clip is not None:
        assert min(expected.gradient_norms) > clip, "the premise: clipping changes every step"
    assert not torch.equal(one_pass.encoder.class_token, vit(None).encoder.class_token)
    assert_same_weights(micro, one_pass)
    # The probe trained on the representations of the pass without gradients: the same features.
    for name, weights in expected_probe.classifier.state_dict().items():
        torch.testing.assert_close(probe.classifier.state_dict()[name], weights, rtol=1e-6, atol=1e-9)


def test_a_checkpoint_resumes_with_or_without_micro_batches(tmp_path: Path) -> None:
    """One epoch per step, so the checkpoint after step 2 is an epoch boundary (a plain DataLoader)."""
    epochs: dict[str, Any] = {"max_epochs": STEPS, "limit_train_batches": 1, "enable_checkpointing": True}
    runs = {}
    for name, micro_batch_size in (("whole", None), ("micro", 2)):
        every_epoch = ModelCheckpoint(dirpath=tmp_path / name, filename="{epoch}", save_top_k=-1)
        runs[name] = vit(micro_batch_size)
        fit(runs[name], tmp_path / name, callbacks=[every_epoch], **epochs)
    assert_same_weights(runs["micro"], runs["whole"])
    for saved_by, resumed_with in (("whole", 2), ("micro", None)):
        resumed = vit(resumed_with)
        checkpoint = tmp_path / saved_by / f"epoch={STEPS - 2}.ckpt"
        steps, _ = fit(resumed, tmp_path / f"resumed-{saved_by}", ckpt_path=str(checkpoint), **epochs)
        assert len(steps.losses) == 1 and resumed.trainer.global_step == STEPS
        assert resumed.hparams.micro_batch_size == resumed_with
        assert_same_weights(resumed, runs["whole"])


def test_channels_last_and_bf16_keep_the_micro_batch_step(tmp_path: Path) -> None:
    """A convolutional network in NHWC with batch-norm (float64: batch-norm over micro-batches of 4 images
    magnifies float32 rounding), and bf16 autocast: the same steps as without."""

    def resnet(channels_last: bool) -> SimCLR:
        pl.seed_everything(0, verbose=False)
        return SimCLR(
            backbone="tiny_resnet", image_size=SIDE, batch_size=BATCH, micro_batch_size=4, optimizer="sgd",
            base_lr=0.5, warmup_epochs=0.0, channels_last=channels_last,
        )  # fmt: skip

    plain, nhwc = resnet(False), resnet(True)
    fit(plain, tmp_path / "plain")
    fit(nhwc, tmp_path / "nhwc")
    assert nhwc.uses_channels_last and not plain.uses_channels_last
    assert_same_weights(nhwc, plain)

    one_pass, micro = vit(None), vit(2)
    expected, _ = fit(one_pass, tmp_path / "one", precision="bf16-mixed")
    steps, _ = fit(micro, tmp_path / "micro", precision="bf16-mixed")
    # bf16 rounds each forward pass's own way; the gradient is still the whole batch's.
    assert steps.losses == pytest.approx(expected.losses, rel=2e-2)
    assert steps.gradient_norms == pytest.approx(expected.gradient_norms, rel=5e-2)


def test_gradient_accumulation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"accumulate_grad_batches 2 .* --model.micro_batch_size 8"):
        fit(vit(None), tmp_path, accumulate_grad_batches=2)


@pytest.mark.parametrize(
    ("micro_batch_size", "message"),
    [(3, "--model.micro_batch_size 3 does not divide the 8 images per device .* e.g. 2 or 4"),
     (0, "--model.micro_batch_size must be >= 1")],
)  # fmt: skip
def test_micro_batch_sizes_that_cannot_split_the_batch(tmp_path: Path, micro_batch_size, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit(vit(micro_batch_size), tmp_path)


def test_micro_batches_of_multi_crop_views_give_the_one_pass_loss_and_gradients() -> None:
    """Small views (--data.num_small_views) split with their images: each micro-batch holds its images'
    large and small views, and the cached step is the one-pass step (batch-norm on running statistics, so
    that the split cannot change the normalisation; float64)."""
    generator = torch.Generator().manual_seed(0)
    view1, view2 = (torch.randn(BATCH, 3, SIDE, SIDE, generator=generator, dtype=torch.float64) for _ in "12")
    small_views = torch.randn(3, BATCH, 3, 8, 8, generator=generator, dtype=torch.float64)

    def step(micro_batch_size: int | None) -> tuple[float, list[Tensor], Tensor]:
        pl.seed_everything(0, verbose=False)
        model = SimCLR(
            backbone="tiny_resnet", image_size=SIDE, batch_size=BATCH, micro_batch_size=micro_batch_size
        )
        model = model.double().eval()
        result = model.contrastive_step(view1, view2, small_views)
        result.loss.backward()
        return float(result.loss), [p.grad.clone() for p in model.parameters()], result.projections

    loss, gradients, projections = step(None)
    micro_loss, micro_gradients, micro_projections = step(2)
    assert micro_loss == pytest.approx(loss, rel=1e-10)
    assert projections.shape == (5 * BATCH, 128)
    torch.testing.assert_close(micro_projections, projections, rtol=1e-10, atol=1e-12)
    for micro_gradient, gradient in zip(micro_gradients, gradients, strict=True):
        torch.testing.assert_close(micro_gradient, gradient, rtol=1e-8, atol=1e-12)
