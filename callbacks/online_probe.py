"""Online linear probe: linear-evaluation accuracy of the encoder, tracked while SimCLR pre-trains.

The contrastive loss says little about how useful the representation is; a linear classifier on frozen
features is SimCLR's standard measure. Training one alongside pre-training, on detached features with its
own optimiser, gives that number at every validation epoch without a separate linear-evaluation run and
without influencing the encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from callbacks.logging_steps import is_logging_step

UNLABELED = -1


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Run with every submodule in eval mode, then give each submodule back its own previous mode.

    Restoring per submodule (rather than ``module.train(was_training)``) leaves deliberately frozen parts,
    such as a backbone whose batch norm the user holds in eval mode, exactly as they were.
    """
    previous_modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for submodule, was_training in previous_modes:
            submodule.training = was_training


def _gather_from_all_ranks(trainer: pl.Trainer, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate the samples of every rank, which may hold different numbers of them (the kNN bank).

    all_gather needs equal shapes, so each rank pads to
    the largest count with the unlabeled marker, and the caller drops the padding with the unlabeled
    samples. Without DDP the gathers return their input unchanged and the reshapes are no-ops.
    """
    strategy = trainer.strategy
    local_count = torch.tensor([labels.shape[0]], device=labels.device)
    padding = int(strategy.all_gather(local_count).max()) - labels.shape[0]
    features = F.pad(features, (0, 0, 0, padding))
    labels = F.pad(labels, (0, padding), value=UNLABELED)
    all_features = strategy.all_gather(features).reshape(-1, features.shape[-1])
    all_labels = strategy.all_gather(labels).reshape(-1)
    return all_features, all_labels


ProbeFeatures = Literal["training_views", "probe_view"]


class OnlineLinearProbe(pl.Callback):
    """Trains a linear classifier on detached encoder features every training step and reports its
    validation accuracy as ``val/probe_top1`` and ``val/probe_top5`` (``test/...`` under ``trainer.test``).

    Args:
        lr: AdamW learning rate of the probe (independent of the encoder's optimiser).
        weight_decay: AdamW weight decay of the probe.
        num_classes: number of classes; ``None`` reads ``trainer.datamodule.num_classes``.
        features: what the probe trains on.
            ``training_views`` (default): the representations the training step already computed, which
            ``training_step`` returns as ``{"loss": loss, "features": h.detach()}`` ([V*B, D]: V views of the
            B images, view-major); the probe then costs one linear layer, no encoder forward.
            ``probe_view``: an extra no-grad, eval-mode encoder forward of ``batch["probe_view"]`` (a weakly
            augmented view), features of the kind validation sees, at the cost of that forward.
    """

    def __init__(
        self,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        num_classes: int | None = None,
        features: ProbeFeatures = "training_views",
    ) -> None:
        super().__init__()
        if features not in ("training_views", "probe_view"):
            raise ValueError(f"--probe.features must be training_views or probe_view, got {features!r}.")
        self.lr = lr
        self.weight_decay = weight_decay
        self.num_classes = num_classes
        self.features = features
        self.classifier: nn.Linear | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.top1: MulticlassAccuracy | None = None
        self.top5: MulticlassAccuracy | None = None
        # Checkpoint state that arrived before setup built the probe; applied at the end of setup.
        self._state_awaiting_setup: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.classifier is not None:
            # A later stage on the same callback (fit, then validate) must keep the trained probe.
            return
        num_classes = self._resolve_num_classes(trainer)
        feature_dim = getattr(pl_module, "feature_dim", None)
        if not isinstance(feature_dim, int):
            raise AttributeError(
                f"OnlineLinearProbe needs an int `feature_dim` on the LightningModule "
                f"({type(pl_module).__name__} has {feature_dim!r}); set it to the size of forward()'s output."
            )
        classifier = nn.Linear(feature_dim, num_classes)
        # DDP ranks never exchange probe gradients, so they stay identical only if they start identical.
        # Broadcast on CPU: a pickled CUDA tensor would be unpickled onto rank 0's device on every rank.
        classifier.load_state_dict(trainer.strategy.broadcast(classifier.state_dict(), src=0))
        self.classifier = classifier.to(pl_module.device)
        # Fused: one kernel per step, the step count kept on the device (the default implementation reads it
        # on the host), and a device-side skip of the step (found_inf) for batches without labels. On one CPU
        # thread it is also the fastest: 0.13 ms per probe step against 0.19 (single-tensor) and 0.23
        # (foreach), for a 64 -> 10 probe on 16 rows (11:41 UTC, load 1.7). All three also pay, under
        # Lightning on a machine without a GPU, ~0.1 ms per step in Adam.step's CUDA-graph check, which
        # asks NVML for the device count each time until CUDA is initialised (never, on such a machine).
        self.optimizer = torch.optim.AdamW(
            self.classifier.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=True
        )
        self.top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro").to(pl_module.device)
        self.top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro").to(
            pl_module.device
        )
        if self._state_awaiting_setup is not None:
            self._apply_state(self._state_awaiting_setup)
            self._state_awaiting_setup = None

    def _resolve_num_classes(self, trainer: pl.Trainer) -> int:
        if self.num_classes is not None:
            return self.num_classes
        num_classes = getattr(trainer.datamodule, "num_classes", None)
        if num_classes is None:
            raise ValueError(
                "OnlineLinearProbe does not know the number of classes: pass `num_classes` to "
                "OnlineLinearProbe (init_args.num_classes in the YAML callbacks section) or use a datamodule "
                "that exposes `num_classes`."
            )
        return int(num_classes)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        features = self._training_features(trainer, pl_module, outputs, batch)
        labels = batch["label"].repeat(features.shape[0] // batch["label"].shape[0])
        # Every rank takes the same step on the same gathered rows; without DDP the gather is the identity.
        features = trainer.strategy.all_gather(features).reshape(-1, features.shape[-1])
        labels = trainer.strategy.all_gather(labels).reshape(-1)
        loss, logits = self._train_step(features, labels)
        if is_logging_step(trainer, batch_idx, after_optimizer_step=True):
            labelled = labels != UNLABELED
            hits = (logits.argmax(dim=-1) == labels) & labelled
            top1 = hits.sum() / labelled.sum().clamp(min=1)
            # Equal on every rank, so they need no sync.
            pl_module.log("train/probe_loss", loss, on_step=True, on_epoch=False, batch_size=labels.shape[0])
            pl_module.log("train/probe_top1", top1, on_step=True, on_epoch=False, batch_size=labels.shape[0])

    def _training_features(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any
    ) -> Tensor:
        if self.features == "probe_view":
            if "probe_view" not in batch:
                raise ValueError(
                    "OnlineLinearProbe(features='probe_view') needs batch['probe_view'], which the datamodule"
                    " makes only when asked: pass --data.probe_view true (train.py sets it for"
                    " --probe.features probe_view), or use --probe.features training_views."
                )
            return self._encode(trainer, pl_module, batch["probe_view"])
        features = outputs.get("features") if isinstance(outputs, dict) else None
        if not isinstance(features, Tensor):
            raise ValueError(
                f"OnlineLinearProbe(features='training_views') needs {type(pl_module).__name__}"
                ".training_step to return {'loss': loss, 'features': representations.detach()}; return "
                "them, or train the probe on its own forward with --probe.features probe_view."
            )
        return features.detach().float()

    def _train_step(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One AdamW step on the labelled rows of features [M, D], labels [M]; returns loss, logits, detached.

        The loss ignores UNLABELED rows instead of selecting the labelled ones, which keeps every shape fixed,
        so nothing is read on the host; a batch without any labelled row skips the step on the device (fused
        AdamW's found_inf), leaving the probe and its optimiser state as they were.
        """
        labelled = (labels != UNLABELED).sum()
        with torch.autocast(device_type=features.device.type, enabled=False):
            logits = self.classifier(features)
            summed = F.cross_entropy(logits, labels, ignore_index=UNLABELED, reduction="sum")
            loss = summed / labelled.clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.found_inf = (labelled == 0).float()
        self.optimizer.step()
        return loss.detach(), logits.detach()

    @staticmethod
    def _encode(trainer: pl.Trainer, pl_module: pl.LightningModule, images: Tensor) -> Tensor:
        """float32 encoder features that leave no trace on the encoder.

        no_grad keeps gradient out of the encoder; eval mode keeps this extra forward from updating
        batch-norm running statistics, and together with validation's precision context it makes the
        features the same kind validation produces.
        """
        with torch.no_grad(), _eval_mode(pl_module), trainer.precision_plugin.val_step_context():
            features = pl_module(images)
        return features.float()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._score(outputs, batch)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_accuracy(pl_module, "val")

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._score(outputs, batch)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_accuracy(pl_module, "test")

    def _score(self, outputs: dict[str, Tensor], batch: tuple[Tensor, Tensor]) -> None:
        _, labels = batch
        with torch.autocast(device_type=labels.device.type, enabled=False):
            logits = self.classifier(outputs["features"].float())
        self.top1.update(logits, labels)
        self.top5.update(logits, labels)

    def _log_accuracy(self, pl_module: pl.LightningModule, split: str) -> None:
        # compute() syncs across ranks, so these are whole-split accuracies, equal on every rank.
        # sync_dist with "max" of equal values is exact and silences Lightning's warning about unsynced
        # epoch-level metrics under DDP. Lightning discards what the sanity check logs; the reset matters.
        for name, metric in ((f"{split}/probe_top1", self.top1), (f"{split}/probe_top5", self.top5)):
            accuracy = metric.compute()
            pl_module.log(name, accuracy, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")
            metric.reset()

    def state_dict(self) -> dict[str, Any]:
        if self.classifier is None:
            return {}
        return {"classifier": self.classifier.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.classifier is None:
            self._state_awaiting_setup = state_dict
        else:
            self._apply_state(state_dict)

    def _apply_state(self, state_dict: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state_dict["classifier"])
        # Checkpoints from before the probe's AdamW was fused resume into the fused step (found_inf needs it).
        saved = state_dict["optimizer"]
        groups = [{**group, "fused": True, "foreach": None} for group in saved["param_groups"]]
        self.optimizer.load_state_dict({**saved, "param_groups": groups})
