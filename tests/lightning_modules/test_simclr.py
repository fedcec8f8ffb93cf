import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules.losses import nt_xent_loss
from lightning_modules.simclr import ProjectionHead, SimCLR


class RandomViews(Dataset):
    def __init__(self, size: int, image_size: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(size, 3, image_size, image_size, generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        return {"view1": image, "view2": image.flip(-1), "probe_view": image, "label": index % 2}


def tiny_model(**overrides) -> SimCLR:
    arguments = dict(backbone="tiny_resnet", image_size=32, temperature=0.5, batch_size=8, warmup_epochs=1.0)
    arguments.update(overrides)
    return SimCLR(**arguments)


def trainer(tmp_path, **overrides) -> pl.Trainer:
    arguments = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
    )
    arguments.update(overrides)
    return pl.Trainer(**arguments)


def test_projection_head_follows_the_paper_default() -> None:
    head = ProjectionHead(input_dim=512, hidden_dim=512, output_dim=128, num_layers=2, batch_norm=True)
    assert [type(m).__name__ for m in head] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head(torch.randn(4, 512)).shape == (4, 128)
    single = ProjectionHead(input_dim=512, hidden_dim=512, output_dim=64, num_layers=1, batch_norm=False)
    assert [type(m).__name__ for m in single] == ["Linear"]


def test_hidden_width_defaults_to_the_representation_width() -> None:
    model = tiny_model()
    assert model.feature_dim == 128
    assert model.projection_head[0].out_features == 128
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_training_loss_is_nt_xent_of_the_projections() -> None:
    model = tiny_model().eval()  # eval: batch-norm uses fixed statistics so both passes agree
    view1, view2 = torch.randn(2, 4, 3, 32, 32)
    logits, targets = model.contrastive_logits(view1, view2)
    z1 = model.projection_head(model.encoder(view1))
    z2 = model.projection_head(model.encoder(view2))
    torch.testing.assert_close(
        torch.nn.functional.cross_entropy(logits, targets), nt_xent_loss(z1, z2, 0.5), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_rejects_non_positive_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="--model.temperature"):
        tiny_model(temperature=temperature)


def test_peak_learning_rate_and_schedule_follow_the_global_batch(tmp_path) -> None:
    # 16 images, per-device batch 8, 2 epochs -> 4 optimiser steps; warm-up of 1 epoch = 2 steps.
    model = tiny_model(base_lr=0.4, batch_size=8)
    learning_rates = []

    class RecordLearningRate(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            learning_rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    fit = trainer(tmp_path, max_epochs=2, callbacks=[RecordLearningRate()], limit_val_batches=0)
    fit.fit(model, train_dataloaders=DataLoader(RandomViews(16), batch_size=8, drop_last=True))
    peak = 0.4 * 8 / 256
    expected = [peak * 0.5, peak * 1.0, peak * 1.0, peak * 0.5 * (1 + math.cos(math.pi * 0.5))]
    assert learning_rates == pytest.approx(expected)


def test_fit_logs_loss_and_positive_accuracy_and_reloads_from_checkpoint(tmp_path) -> None:
    model = tiny_model()
    fit = trainer(tmp_path, max_steps=3, enable_checkpointing=True, log_every_n_steps=1)
    data = DataLoader(RandomViews(16), batch_size=8, drop_last=True)
    fit.fit(model, train_dataloaders=data)
    metrics = fit.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert 0.0 <= metrics["train/positive_accuracy"].item() <= 1.0
    checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
    restored = SimCLR.load_from_checkpoint(checkpoint)
    assert restored.hparams.backbone == "tiny_resnet"
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(restored.eval()(images), model.eval()(images))


def test_validation_step_returns_features_for_the_callbacks() -> None:
    model = tiny_model().eval()
    images, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    outputs = model.validation_step((images, labels), 0)
    assert outputs["features"].shape == (3, 128) and not outputs["features"].requires_grad
    assert outputs["labels"] is labels
