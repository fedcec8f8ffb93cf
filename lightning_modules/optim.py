"""Optimisers and the learning-rate schedule of SimCLR.

The learning-rate rule lives here and nowhere else:

    peak learning rate = base_lr * (images per optimiser step over all devices) / 256

as in the SimCLR paper (LARS, base_lr 0.3 for ImageNet at batch 4096 -> 4.8). The schedule is a
linear warm-up to that peak followed by a cosine decay to zero, evaluated per optimiser step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, get_args

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn

OptimizerName = Literal["lars", "sgd", "adamw"]
TrustRatio = Literal["simclr", "bolts"]

# lightly's and Lightning Bolts' default eps in the denominator of the "bolts" trust ratio.
BOLTS_EPS = 1e-8

REFERENCE_BATCH_SIZE = 256


def scaled_learning_rate(base_lr: float, images_per_step: int) -> float:
    """The paper's linear scaling rule: base_lr is the rate for a batch of 256 images."""
    return base_lr * images_per_step / REFERENCE_BATCH_SIZE


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak learning rate at optimiser step `step` (0-based).

    Rises linearly from 1/warmup_steps to 1 over the warm-up, then follows half a cosine to 0 at
    `total_steps`; it stays at 0 past the end rather than rising again.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(torch.optim.lr_scheduler.LambdaLR):
    """warmup_cosine per optimiser step, with its plan saved in the checkpoint so a resume can compare.

    A run resumed with another --trainer.max_epochs (or warmup_epochs, or base_lr) follows the plan of
    the resumed invocation, and says so in one line: the cosine is stretched or shrunk around the
    current step, or scaled to the new peak, which moves the learning rate. Without this, LambdaLR would
    re-plan the length silently and keep the checkpoint's peak while the new one is printed.
    `images_per_step` is recorded so that a resume with another batch can be refused
    (reliability/fit_settings.py): the step count itself would then mean something else.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int,
        images_per_step: int | None = None,
    ) -> None:
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.images_per_step = images_per_step
        # A lambda (not a bound method): LambdaLR saves callable objects' state but not functions'.
        super().__init__(optimizer, lambda step: warmup_cosine(step, self.total_steps, self.warmup_steps))

    def load_state_dict(self, state_dict: dict) -> None:
        planned = self.total_steps, self.warmup_steps, self.images_per_step
        planned_peaks = list(self.base_lrs)
        super().load_state_dict(state_dict)  # also restores the saved plan and peaks
        note = replanned_schedule_note(state_dict, planned[0], planned[1], planned_peaks)
        self.total_steps, self.warmup_steps, self.images_per_step = planned
        self.base_lrs = planned_peaks
        # The optimiser's groups came back with the rate the saved plan gave the next step; the next
        # step must already take this plan's.
        factor = warmup_cosine(self.last_epoch, self.total_steps, self.warmup_steps)
        self._last_lr = [peak * factor for peak in planned_peaks]
        for group, peak, rate in zip(self.optimizer.param_groups, planned_peaks, self._last_lr, strict=True):
            group["initial_lr"], group["lr"] = peak, rate
        if note:
            rank_zero_info(note)


def replanned_schedule_note(
    saved: dict, total_steps: int, warmup_steps: int, peak_lrs: list[float] | None = None
) -> str | None:
    """One line when the plan of a checkpoint's WarmupCosineLR (`saved`) differs from this one (its
    length, or its peak rates `peak_lrs`); else None."""
    saved_plan = saved.get("total_steps"), saved.get("warmup_steps")
    saved_peaks = [float(peak) for peak in saved["base_lrs"]]
    peaks = saved_peaks if peak_lrs is None else peak_lrs
    length_changed = None not in saved_plan and saved_plan != (total_steps, warmup_steps)
    peak_changed = any(not math.isclose(a, b, rel_tol=1e-9) for a, b in zip(saved_peaks, peaks, strict=True))
    if not (length_changed or peak_changed):
        return None
    step = int(saved["last_epoch"])
    saved_factor = warmup_cosine(step, *saved_plan) if None not in saved_plan else None  # type: ignore[arg-type]
    saved_lr = saved_peaks[0] * saved_factor if saved_factor is not None else float(saved["_last_lr"][0])
    new_lr = peaks[0] * warmup_cosine(step, total_steps, warmup_steps)
    changes, flags = [], []
    if length_changed:
        changes.append(
            f"from {saved_plan[0]} steps ({saved_plan[1]} warm-up) to {total_steps} ({warmup_steps} "
            "warm-up), this run's max_epochs x steps per epoch"
        )
        flags.append("--trainer.max_epochs")
    if peak_changed:
        changes.append(
            f"{'and ' if changes else ''}to a peak of {peaks[0]:.4g} instead of {saved_peaks[0]:.4g}, this "
            "run's base_lr x images per step / 256"
        )
        flags.append("--model.base_lr")
    return (
        f"Resuming at step {step}: the learning-rate schedule is re-planned {', '.join(changes)}, so the "
        f"rate goes from {saved_lr:.4g} to {new_lr:.4g}; resume with the original {' and '.join(flags)} "
        "to keep the original schedule."
    )


class LARS(torch.optim.Optimizer):
    """SGD with momentum and a layer-wise trust ratio (You et al., 2017), as SimCLR trains with.

    Each parameter's update is scaled by a trust ratio of about trust_coefficient * ||w|| / ||grad||, so
    every layer moves by a similar fraction of its norm, which is what keeps batch 4096 stable.
    Parameter groups with `lars_exclude=True` (biases and normalisation weights) get neither weight
    decay nor the trust ratio: scaling a bias or a batch-norm gain by its own tiny norm stalls it.

    Implementations disagree on the ratio's denominator, so `trust_ratio` chooses it:
    - "simclr" (default): trust_coefficient * ||w|| / ||g + wd w||, the update's own norm, as SimCLR's
      official TensorFlow code (lars_optimizer.py) and MoCo v3 compute it; 1 where either norm is 0.
    - "bolts": trust_coefficient * ||w|| / (||g|| + wd ||w|| + 1e-8), as Lightning Bolts, lightly
      (lightly.utils.lars.LARS) and solo-learn compute it, to reproduce their runs. Like them, a tensor
      whose weight or gradient norm is 0 takes the plain gradient step (no decay, no scaling).
    The two agree when wd ||w|| is small against ||g||; the triangle inequality makes the bolts ratio
    the smaller one. Bolts and lightly exempt groups whose weight_decay is 0, solo-learn 1-d tensors; here
    `lars_exclude` exempts, and parameter_groups sets it on its weight-decay-0 group of 1-d tensors (plus,
    in ViTs, position embeddings and class tokens).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 0.001,
        trust_ratio: TrustRatio = "simclr",
    ) -> None:
        if lr <= 0:
            raise ValueError(f"LARS learning rate must be > 0, got {lr}.")
        if trust_ratio not in get_args(TrustRatio):
            raise ValueError(f"LARS trust_ratio must be 'simclr' or 'bolts', got {trust_ratio!r}.")
        # An attribute, not a group default: param_groups are saved in checkpoints, whose format stays.
        self.trust_ratio = trust_ratio
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """One multi-tensor update per parameter group: a fixed handful of foreach ops, whatever the
        number of parameters, and no value ever read back to the host."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            grads = [param.grad for param in params]
            if group["lars_exclude"]:
                updates = grads
            else:
                updates = torch._foreach_add(grads, params, alpha=group["weight_decay"])
                if self.trust_ratio == "simclr":
                    ratios = self._trust_ratios(params, updates, group["trust_coefficient"])
                else:
                    ratios = self._bolts_trust_ratios(
                        params, grads, group["weight_decay"], group["trust_coefficient"]
                    )
                torch._foreach_mul_(updates, ratios)
            self._momentum_step(params, updates, group["momentum"])
            buffers = [self.state[param]["momentum_buffer"] for param in params]
            torch._foreach_add_(params, buffers, alpha=-group["lr"])
        return loss

    @staticmethod
    def _trust_ratios(params: list[Tensor], updates: list[Tensor], trust_coefficient: float) -> list[Tensor]:
        """trust_coefficient * ||w|| / ||update|| per tensor as 0-d device tensors; 1 where a norm is 0."""
        param_norms = torch.stack(torch._foreach_norm(params))
        update_norms = torch.stack(torch._foreach_norm(updates))
        ratios = torch.where(
            (param_norms > 0) & (update_norms > 0), trust_coefficient * param_norms / update_norms, 1.0
        )
        return list(ratios.unbind())

    @staticmethod
    def _bolts_trust_ratios(
        params: list[Tensor], grads: list[Tensor], weight_decay: float, trust_coefficient: float
    ) -> list[Tensor]:
        """trust_coefficient * ||w|| / (||g|| + wd ||w|| + eps) per tensor as 0-d device tensors.

        Where ||w|| is 0 the ratio is 1 and the update g + wd w is g; where ||g|| is 0 it is 0, which
        zeroes the update (the peers step by g = 0 there, without decay)."""
        param_norms = torch.stack(torch._foreach_norm(params))
        grad_norms = torch.stack(torch._foreach_norm(grads))
        ratios = trust_coefficient * param_norms / (grad_norms + weight_decay * param_norms + BOLTS_EPS)
        ratios = torch.where(grad_norms > 0, torch.where(param_norms > 0, ratios, 1.0), 0.0)
        return list(ratios.unbind())

    def _momentum_step(self, params: list[Tensor], updates: list[Tensor], momentum: float) -> None:
        """buffer = momentum * buffer + update; the first step stores the update itself."""
        buffers, buffered_updates = [], []
        for param, update in zip(params, updates, strict=True):
            state = self.state[param]
            if "momentum_buffer" in state:
                buffers.append(state["momentum_buffer"])
                buffered_updates.append(update)
            else:
                state["momentum_buffer"] = torch.clone(update).detach()
        if buffers:
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_add_(buffers, buffered_updates)


# Transformer parameters that are not weights of a layer: position embeddings and the class (and
# distillation/register) tokens, under torchvision's and timm's names. Decaying them pulls learned
# positions and the token towards zero; ViT recipes (DeiT, MoCo v3, DINO, timm) exempt them.
NO_DECAY_NAMES = (
    "class_token", "pos_embedding", "cls_token", "pos_embed", "dist_token", "reg_token",
    "relative_position_bias_table",
)


def is_excluded_from_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, normalisation parameters (all 1-d tensors), position embeddings and class tokens are
    exempt from weight decay and from LARS's trust ratio."""
    return param.ndim <= 1 or name.endswith(".bias") or name.rpartition(".")[2] in NO_DECAY_NAMES


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Split parameters into a decayed group and an exempt group (see is_excluded_from_decay)."""
    decayed, exempt = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (exempt if is_excluded_from_decay(name, param) else decayed).append(param)
    return [
        {"params": decayed, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": exempt, "weight_decay": 0.0, "lars_exclude": True},
    ]


def build_optimizer(
    name: OptimizerName,
    module: nn.Module,
    lr: float,
    weight_decay: float,
    momentum: float,
    lars_trust_ratio: TrustRatio = "simclr",
) -> torch.optim.Optimizer:
    """The same decay exemptions apply to every optimiser; only LARS reads `lars_exclude` and
    `lars_trust_ratio` (see LARS)."""
    groups = parameter_groups(module, weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, trust_ratio=lars_trust_ratio)
    # Only LARS understands the flag; keep it out of the other optimisers' saved state.
    for group in groups:
        group.pop("lars_exclude")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"Unknown optimizer '{name}' (--model.optimizer); choose lars, sgd or adamw.")
