"""Our SimCLR, trained through Lightning, follows an independent reference step for step.

The reference (bench/reference_simclr.py) is a plain PyTorch step built from a peer library (lightly's
NT-Xent loss and projection head) plus MoCo v3's LARS and the paper's warm-up + cosine schedule written
from their published definitions. It runs configs/cifar10.yaml's recipe (LARS, base_lr 0.5 scaled by
batch / 256, weight decay 1e-6, momentum 0.9, temperature 0.5, 2-layer head, warm-up then cosine stepped
per optimiser step) on a tiny backbone, in float64: in float32 the two loops round differently and drift
apart by about 1e-5 after 20 steps, which would hide a real difference of that size.

A second case holds `lars_trust_ratio="bolts"` against the same loop stepped by lightly's own LARS
(lightly.utils.lars.LARS, Lightning Bolts' trust ratio ||w|| / (||g|| + wd ||w||)).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.utils.lars import LARS as LightlyLARS
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bench.reference_simclr import contrastive_backward, projection_head, training_step, warmup_cosine_lr
from lightning_modules.simclr import SimCLR

BATCH, STEPS_PER_EPOCH, EPOCHS, IMAGE = 16, 10, 2, 16
STEPS = STEPS_PER_EPOCH * EPOCHS  # 20
RECIPE = dict(temperature=0.5, base_lr=0.5, weight_decay=1e-6, momentum=0.9, warmup_epochs=0.5)
WARMUP_STEPS = round(RECIPE["warmup_epochs"] * STEPS_PER_EPOCH)


def view_batches() -> list[dict[str, Tensor]]:
    """Fixed views, so both loops see the same pixels; the order repeats every epoch."""
    generator = torch.Generator().manual_seed(0)
    return [
        {"view1": torch.randn(BATCH, 3, IMAGE, IMAGE, generator=generator, dtype=torch.float64),
         "view2": torch.randn(BATCH, 3, IMAGE, IMAGE, generator=generator, dtype=torch.float64)}
        for _ in range(STEPS_PER_EPOCH)
    ]  # fmt: skip


# One reference step: (criterion, view1, view2, learning rate) -> loss, with the optimiser's state inside.
ReferenceStep = Callable[[NTXentLoss, Tensor, Tensor, float], Tensor]


def moco_v3_lars(network: nn.Module) -> ReferenceStep:
    """bench/reference_simclr.training_step: MoCo v3's LARS, the paper's trust ratio."""
    buffers: dict = {}

    def step(criterion: NTXentLoss, view1: Tensor, view2: Tensor, lr: float) -> Tensor:
        return training_step(
            network, criterion, view1, view2, buffers, lr, RECIPE["weight_decay"], RECIPE["momentum"]
        )

    return step


def lightly_lars(network: nn.Module) -> ReferenceStep:
    """lightly's own LARS: weights decayed, 1-d parameters in a group with weight decay 0, which lightly
    also exempts from the trust ratio; the schedule's rate set on its groups before each step."""
    params = [param for param in network.parameters() if param.requires_grad]
    optimizer = LightlyLARS(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": RECIPE["weight_decay"]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=RECIPE["base_lr"], momentum=RECIPE["momentum"], trust_coefficient=0.001,
    )  # fmt: skip

    def step(criterion: NTXentLoss, view1: Tensor, view2: Tensor, lr: float) -> Tensor:
        loss = contrastive_backward(network, criterion, view1, view2)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return loss

    return step


def reference_trajectory(
    encoder: nn.Module,
    ours_head: nn.Sequential,
    batches: list[dict[str, Tensor]],
    reference_step: Callable[[nn.Module], ReferenceStep],
) -> tuple[list[float], nn.Module]:
    """Plain loop: lightly's loss and head (weights copied from ours), the reference LARS and schedule."""
    head = projection_head(ours_head[0].in_features).to(next(encoder.parameters()).dtype)
    for ours, theirs in zip(ours_head.state_dict().values(), head.state_dict().values(), strict=True):
        theirs.copy_(ours)
    network = nn.Sequential(encoder, head).train()
    criterion = NTXentLoss(temperature=RECIPE["temperature"])
    step_fn = reference_step(network)
    losses = []
    peak = RECIPE["base_lr"] * BATCH / 256
    for step in range(STEPS):
        batch = batches[step % STEPS_PER_EPOCH]
        lr = warmup_cosine_lr(step, STEPS, WARMUP_STEPS, peak)
        losses.append(step_fn(criterion, batch["view1"], batch["view2"], lr).item())
    return losses, network


class RecordLosses(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize(
    "trust_ratio,reference_step",
    [("simclr", moco_v3_lars), ("bolts", lightly_lars)],
    ids=["moco_v3_lars", "lightly_lars"],
)
def test_twenty_steps_match_the_reference(
    tmp_path, trust_ratio: str, reference_step: Callable[[nn.Module], ReferenceStep]
) -> None:
    torch.manual_seed(0)
    model = SimCLR(
        backbone="tiny_resnet", image_size=IMAGE, batch_size=BATCH, optimizer="lars",
        lars_trust_ratio=trust_ratio, **RECIPE,
    )  # fmt: skip
    model = model.double()
    initial = copy.deepcopy(model)
    batches = view_batches()

    record = RecordLosses()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=EPOCHS, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[record], num_sanity_val_steps=0, limit_val_batches=0, precision="64-true",
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    reference_losses, reference = reference_trajectory(
        copy.deepcopy(initial.encoder), initial.projection_head, batches, reference_step
    )

    assert len(record.losses) == STEPS
    torch.testing.assert_close(torch.tensor(record.losses), torch.tensor(reference_losses), rtol=1e-5, atol=0)
    # Same modules in the same order; lightly names its head's layers differently.
    ours = list(nn.Sequential(model.encoder, model.projection_head).parameters())
    theirs = list(reference.parameters())
    starts = list(nn.Sequential(initial.encoder, initial.projection_head).parameters())
    assert [p.shape for p in ours] == [p.shape for p in theirs]
    moved = 0
    for index, (mine, reference_param, start) in enumerate(zip(ours, theirs, starts, strict=True)):
        torch.testing.assert_close(mine, reference_param, rtol=1e-4, atol=1e-6, msg=f"parameter {index}")
        # The displacement itself must agree, not only the (barely moved) weights.
        displacement = (reference_param - start).detach()
        error = (mine - reference_param).detach().norm()
        assert error <= 1e-6 * displacement.norm() + 1e-12, f"parameter {index}"
        # LARS moves a weight by about lr * 1e-3 of its norm per step: small, but far above the tolerance.
        moved += int(displacement.norm() > 1e-5 * start.detach().norm())
    assert moved == len(ours), "a parameter that did not move would make the comparison vacuous"
