"""`evaluate.py export` for every kind of backbone: encoder.json names a constructor of torchvision,
timm or (tiny_resnet) this project, and encoder.pt loads strictly into what it builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from evaluation.cli import main
from evaluation.export import load_exported_encoder, rebuild_encoder, recipe_from_json
from lightning_modules.backbones import TinyResNet, apply_cifar_stem
from lightning_modules.simclr import SimCLR
from tests.evaluation.conftest import PretrainedRun


def save_checkpoint(module: SimCLR, path: Path) -> Path:
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return path


def export(checkpoint: Path, output: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    meta = main(["export", "--ckpt", str(checkpoint), "--output_dir", str(output)])
    assert json.loads((output / "encoder.json").read_text()) == meta
    return meta, torch.load(output / "encoder.pt", weights_only=True)


def assert_same_features(rebuilt: nn.Module, encoder: nn.Module, image_size: int) -> None:
    images = torch.randn(3, 3, image_size, image_size)
    torch.testing.assert_close(rebuilt.eval()(images), encoder.eval()(images))


def test_tiny_resnet_of_a_real_run_exports_into_this_projects_class(
    pretrained_run: PretrainedRun, tmp_path: Path
) -> None:
    meta, state_dict = export(pretrained_run.checkpoint, tmp_path / "export")
    assert meta["constructor"] == "lightning_modules.backbones.TinyResNet"
    assert (meta["args"], meta["kwargs"], meta["cifar_stem"], meta["head"]) == ([], {}, True, "fc")
    plain = TinyResNet()
    apply_cifar_stem(plain)
    plain.fc = nn.Identity()
    plain.load_state_dict(state_dict)  # strict
    encoder = SimCLR.load_from_checkpoint(pretrained_run.checkpoint, map_location="cpu").encoder
    assert_same_features(plain, encoder, 32)
    assert_same_features(load_exported_encoder(tmp_path / "export"), encoder, 32)


@pytest.mark.parametrize(("image_size", "patch_size"), [(32, 4), (96, 8)])
def test_vit_exports_into_torchvisions_vision_transformer(
    tmp_path: Path, image_size: int, patch_size: int
) -> None:
    module = SimCLR(backbone="vit_micro", image_size=image_size)
    meta, state_dict = export(save_checkpoint(module, tmp_path / "vit.ckpt"), tmp_path / "export")
    assert meta["constructor"] == "torchvision.models.vision_transformer.VisionTransformer"
    assert meta["kwargs"] == {
        "image_size": image_size, "patch_size": patch_size, "num_layers": 2, "num_heads": 2,
        "hidden_dim": 32, "mlp_dim": 128,
    }
    assert (meta["cifar_stem"], meta["head"], meta["feature_dim"]) == (False, "heads", 32)
    # Without this project: the recorded constructor, the head removed, a strict load.
    plain = VisionTransformer(**meta["kwargs"])
    plain.heads = nn.Identity()
    plain.load_state_dict(state_dict)
    assert_same_features(plain, module.encoder, image_size)
    assert_same_features(load_exported_encoder(tmp_path / "export"), module.encoder, image_size)


def test_timm_model_exports_into_timm_create_model(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    module = SimCLR(backbone="timm/test_vit", image_size=32, patch_size=4)
    meta, state_dict = export(save_checkpoint(module, tmp_path / "timm.ckpt"), tmp_path / "export")
    assert (meta["constructor"], meta["args"], meta["head"]) == ("timm.create_model", ["test_vit"], None)
    assert meta["kwargs"] == {"pretrained": False, "num_classes": 0, "img_size": 32, "patch_size": 4}
    plain = timm.create_model(*meta["args"], **meta["kwargs"])
    plain.load_state_dict(state_dict)
    assert_same_features(plain, module.encoder, 32)


def test_weights_that_do_not_fit_the_recipe_name_encoder_json(tmp_path: Path) -> None:
    module = SimCLR(backbone="vit_micro", image_size=32)
    meta, state_dict = export(save_checkpoint(module, tmp_path / "vit.ckpt"), tmp_path / "export")
    meta["kwargs"]["patch_size"] = 8
    with pytest.raises(ValueError, match=r"do not fit .*VisionTransformer.*Check encoder.json"):
        rebuild_encoder(recipe_from_json(meta), state_dict)
