"""The view pipelines the benchmarks compare, each an endless source of training batches.

Ours come from the project's own datamodule, built from a config file's `data:` section, so a benchmark
follows whatever path that config picks. The peers' pipelines get the settings of that same datamodule
(image size, crop scale, jitter strength, blur, mean/std), so every pipeline does the same augmentation.
For the fixed-size datasets every source starts from the same decoded uint8 pixels held in memory: JPEG
decoding is counted for none; making a PIL image or tensor per item, cropping, colour, collation and
normalisation are counted for all. For an image folder (`SourceInputs.pixels` None) every source reads the
same JPEG files under root/train, so decoding is counted for all: ours through the datamodule, the peers'
through torchvision's ImageFolder and its PIL loader, as their training scripts read ImageNet.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as v1
from torchvision.datasets import ImageFolder

from datamodules.base import SimCLRDataModule
from views.config import blur_kernel_size, uses_blur

Batch = dict[str, Tensor]
BatchSource = Iterator[Batch]
# What the pipelines do, for reports; the keys are the names accepted on the command line.
PIPELINES = {
    "default": "our datamodule as configured (the path the config file picks)",
    "per_image": "our datamodule with the per-image path forced",
    "batched": "our datamodule with the batched view path forced",
    "peers_pil": "torchvision v1 transforms on PIL images, two views per image (x_peers baseline)",
    "lightly": "lightly's SimCLRTransform on PIL images",
    "kornia": "kornia.augmentation on float batches",
}
BASELINE = "peers_pil"
OPTIONAL_MODULES = {"lightly": "lightly", "kornia": "kornia"}


@dataclass(frozen=True)
class ViewSettings:
    """The augmentation settings of one datamodule, handed to every peer pipeline."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    jitter_strength: float
    min_crop_scale: float
    blur: bool

    @classmethod
    def of(cls, datamodule: SimCLRDataModule) -> ViewSettings:
        hp = datamodule.hparams
        size = datamodule.image_size
        return cls(size, datamodule.mean, datamodule.std, hp.jitter_strength, hp.min_crop_scale,
                   uses_blur(size, hp.blur))  # fmt: skip


@dataclass(frozen=True)
class SourceInputs:
    """What every source is built from: a config file, its data files under `root`, the same pixels."""

    config_file: Path
    root: Path
    pixels: np.ndarray | None  # [N, H, W, 3] uint8, the images written under `root`; None: JPEG files there
    batch_size: int
    workers: int
    device: torch.device
    datamodule_args: dict[str, Any] = field(default_factory=dict)  # e.g. compile_augment


def missing_dependency(pipeline: str) -> str | None:
    """Why an optional pipeline cannot run here, or None when it can."""
    module = OPTIONAL_MODULES.get(pipeline)
    if module is None:
        return None
    try:
        importlib.import_module(module)
    except ImportError as err:
        return f"{module} is not importable ({err}); pip install --target DIR --no-deps {module}"
    return None


# ----- our datamodule ----------------------------------------------------------------------------------
def path_override(datamodule_class: type, path: str | None) -> dict[str, Any]:
    """Init arguments that force the batched or per-image view path (None: leave the config's choice).

    Takes `view_path` when the datamodule has it; older code only had the `gpu_augment` switch.
    """
    if path is None:
        return {}
    if "view_path" in inspect.signature(datamodule_class.__init__).parameters:
        return {"view_path": path}
    return {"gpu_augment": path == "batched"}


def build_datamodule(inputs: SourceInputs, path: str | None = None) -> SimCLRDataModule:
    """The config file's datamodule, reading `inputs.root` offline, batches of `inputs.batch_size`."""
    data = yaml.safe_load(inputs.config_file.read_text())["data"]
    module_name, _, class_name = data["class_path"].rpartition(".")
    datamodule_class = getattr(importlib.import_module(module_name), class_name)
    parameters = inspect.signature(datamodule_class.__init__).parameters
    arguments = {
        **data.get("init_args", {}),
        "root": str(inputs.root),
        # Offline; an image folder has nothing to download and takes no such argument.
        **({"download": False} if "download" in parameters else {}),
        "num_workers": inputs.workers,
        "batch_size": inputs.batch_size,
        # The benchmark times training views; a validation slice of a small subset would only shrink it.
        "val_holdout": 0,
        **inputs.datamodule_args,
        **path_override(datamodule_class, path),
    }
    return datamodule_class(**arguments)


def attach_device(datamodule: SimCLRDataModule, device: torch.device) -> None:
    """Gives the datamodule an (unfitted) Trainer on `device`, where it reads the device it trains on.

    Without one a datamodule assumes the CPU: the batched path would keep its images in host memory
    and make the views there, which is not what it does in a GPU run.
    """
    devices = [device.index or 0] if device.type == "cuda" else 1
    datamodule.trainer = pl.Trainer(
        accelerator=device.type, devices=devices, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


def datamodule_batches(datamodule: SimCLRDataModule, device: torch.device) -> BatchSource:
    """The training dataloader, then the datamodule's transfer hooks as Lightning calls them: on a GPU the
    batched paths finish their views there (the cached one from uint8 images, the one from files after
    decoding the JPEG bytes in `transfer_batch_to_device`)."""
    if device.type != "cpu":
        attach_device(datamodule, device)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    while True:
        for batch in loader:
            moved = datamodule.transfer_batch_to_device(batch, device, 0)
            yield datamodule.on_after_batch_transfer(moved, 0)


# ----- the peers ---------------------------------------------------------------------------------------
class TwoViews:
    """Two independent views of one image by one view transform (the peers' "TwoCropTransform")."""

    def __init__(self, view: Callable[[Image.Image], Tensor]) -> None:
        self.view = view

    def __call__(self, image: Image.Image) -> Sequence[Tensor]:
        return self.view(image), self.view(image)


class PILViews(Dataset):
    """A PIL image per item from the in-memory pixels, as torchvision's CIFAR10/STL10 make one."""

    def __init__(self, pixels: np.ndarray, two_views: Callable[[Image.Image], Sequence[Tensor]]) -> None:
        self.pixels = pixels
        self.two_views = two_views

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        view1, view2 = self.two_views(Image.fromarray(self.pixels[index]))
        return {"view1": view1, "view2": view2, "label": index % 10}


class FileViews(Dataset):
    """The two views of each image of root/train, read by torchvision's ImageFolder (decoding counted)."""

    def __init__(self, train_dir: Path, two_views: Callable[[Image.Image], Sequence[Tensor]]) -> None:
        self.images = ImageFolder(str(train_dir))
        self.two_views = two_views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor | int]:
        image, label = self.images[index]
        view1, view2 = self.two_views(image)
        return {"view1": view1, "view2": view2, "label": label}


def peers_view(settings: ViewSettings) -> v1.Compose:
    """What most SimCLR ports use: torchvision v1 on PIL, the paper's augmentation."""
    s = settings.jitter_strength
    steps: list[Callable] = [
        v1.RandomResizedCrop(settings.image_size, scale=(settings.min_crop_scale, 1.0)),
        v1.RandomHorizontalFlip(),
        v1.RandomApply([v1.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        v1.RandomGrayscale(p=0.2),
    ]
    if settings.blur:
        blur = v1.GaussianBlur(blur_kernel_size(settings.image_size), (0.1, 2.0))
        steps.append(v1.RandomApply([blur], p=0.5))
    return v1.Compose([*steps, v1.ToTensor(), v1.Normalize(settings.mean, settings.std)])


def lightly_two_views(settings: ViewSettings) -> Callable[[Image.Image], Sequence[Tensor]]:
    from lightly.transforms.simclr_transform import SimCLRTransform  # optional: not a dependency

    return SimCLRTransform(
        input_size=settings.image_size,
        cj_strength=settings.jitter_strength,
        min_scale=settings.min_crop_scale,
        gaussian_blur=0.5 if settings.blur else 0.0,
        normalize={"mean": list(settings.mean), "std": list(settings.std)},
    )


def pil_batches(inputs: SourceInputs, two_views: Callable[[Image.Image], Sequence[Tensor]]) -> BatchSource:
    if inputs.pixels is None:
        dataset: Dataset = FileViews(inputs.root / "train", two_views)
    else:
        dataset = PILViews(inputs.pixels, two_views)
    loader = DataLoader(
        dataset, batch_size=inputs.batch_size, shuffle=True, drop_last=True,
        num_workers=inputs.workers, persistent_workers=inputs.workers > 0,
        pin_memory=inputs.device.type == "cuda",
    )  # fmt: skip
    while True:
        for batch in loader:
            yield {key: value.to(inputs.device, non_blocking=True) for key, value in batch.items()}


def kornia_batches(inputs: SourceInputs, settings: ViewSettings) -> BatchSource:
    import kornia.augmentation as K  # optional: not a dependency

    s = settings.jitter_strength
    size = settings.image_size
    steps = [
        K.RandomResizedCrop((size, size), scale=(settings.min_crop_scale, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
        K.RandomGrayscale(p=0.2),
    ]
    if settings.blur:
        kernel = blur_kernel_size(size)
        steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5))
    if inputs.pixels is None:
        raise ValueError("kornia.augmentation batches images of one size in memory, not a folder of files")
    normalise = K.Normalize(torch.tensor(settings.mean), torch.tensor(settings.std))
    augment = K.AugmentationSequential(*steps, normalise).to(inputs.device)
    images = torch.from_numpy(inputs.pixels).permute(0, 3, 1, 2).contiguous().to(inputs.device)
    while True:
        indices = torch.randint(0, len(images), (inputs.batch_size,), device=inputs.device)
        batch = images[indices].float().div_(255)
        yield {"view1": augment(batch), "view2": augment(batch)}


def build_source(pipeline: str, inputs: SourceInputs) -> BatchSource:
    """An endless source of `pipeline`'s training batches; each batch holds view1 and view2 [B, 3, S, S]."""
    if pipeline in ("default", "per_image", "batched"):
        path = None if pipeline == "default" else pipeline
        return datamodule_batches(build_datamodule(inputs, path), inputs.device)
    settings = ViewSettings.of(build_datamodule(inputs))
    if pipeline == "peers_pil":
        return pil_batches(inputs, TwoViews(peers_view(settings)))
    if pipeline == "lightly":
        return pil_batches(inputs, lightly_two_views(settings))
    if pipeline == "kornia":
        return kornia_batches(inputs, settings)
    raise ValueError(f"unknown pipeline '{pipeline}'; choose from {', '.join(PIPELINES)}")
