import sys

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from lightning_modules.backbones import (
    VIT_SIZES,
    available_backbones,
    backbone_constructor,
    benefits_from_channels_last,
    build_backbone,
    default_patch_size,
)


def test_small_images_get_the_cifar_stem() -> None:
    encoder, feature_dim = build_backbone("resnet18", image_size=32)
    assert feature_dim == 512
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, nn.Identity)
    assert isinstance(encoder.fc, nn.Identity)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_large_images_keep_the_imagenet_stem_unless_forced() -> None:
    encoder, _ = build_backbone("resnet18", image_size=224)
    assert encoder.conv1.kernel_size == (7, 7)
    forced, _ = build_backbone("resnet18", image_size=224, cifar_stem=True)
    assert forced.conv1.kernel_size == (3, 3)
    kept, _ = build_backbone("resnet18", image_size=32, cifar_stem=False)
    assert kept.conv1.kernel_size == (7, 7)


def test_non_resnet_heads_are_removed() -> None:
    encoder, feature_dim = build_backbone("mobilenet_v3_small", image_size=64)
    assert feature_dim == 576
    assert encoder(torch.randn(2, 3, 64, 64)).shape == (2, 576)


def test_tiny_resnet_is_small_and_works_at_32_px() -> None:
    encoder, feature_dim = build_backbone("tiny_resnet", image_size=32)
    assert feature_dim == 128
    assert sum(p.numel() for p in encoder.parameters()) < 1_000_000
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 128)


def test_unknown_backbone_names_the_flag_and_suggests() -> None:
    expected = r"Unknown backbone 'resnt18' \(--model.backbone\). Did you mean resnet18"
    with pytest.raises(ValueError, match=expected):
        build_backbone("resnt18", image_size=32)


def test_forced_cifar_stem_on_a_model_without_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="cifar_stem true needs a ResNet-style stem"):
        build_backbone("mobilenet_v3_small", image_size=32, cifar_stem=True)


def test_available_backbones_lists_torchvision_and_project_models() -> None:
    names = available_backbones()
    assert {"resnet18", "resnet50", "tiny_resnet", "vit_tiny", "vit_small", "vit_base"} <= set(names)


# --- ViTs and timm ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("image_size", "patch_size"), [(16, 2), (32, 4), (64, 8), (96, 8), (224, 16)])
def test_vit_patch_size_follows_the_image_size(image_size: int, patch_size: int) -> None:
    assert default_patch_size(image_size) == patch_size


@pytest.mark.parametrize(("image_size", "tokens"), [(32, 8 * 8 + 1), (96, 12 * 12 + 1)])
def test_vit_builds_for_the_image_size_and_returns_the_class_token(image_size: int, tokens: int) -> None:
    torch.manual_seed(0)
    encoder, feature_dim = build_backbone("vit_micro", image_size=image_size)
    assert isinstance(encoder, VisionTransformer) and feature_dim == 32
    assert encoder.seq_length == tokens
    images = torch.randn(2, 3, image_size, image_size)
    features = encoder.eval()(images)
    assert features.shape == (2, 32)
    # Independently: patchify, prepend the class token, run the blocks; the representation is the
    # class token's row, not the mean of the patch tokens.
    patches = encoder.conv_proj(images).flatten(2).transpose(1, 2)
    sequence = torch.cat([encoder.class_token.expand(2, -1, -1), patches], dim=1)
    hidden = encoder.encoder(sequence)
    torch.testing.assert_close(features, hidden[:, 0])
    assert not torch.allclose(features, hidden[:, 1:].mean(dim=1))


def test_vit_sizes_are_deit_tiny_small_base() -> None:
    widths = {name: (s.hidden_dim, s.num_layers, s.num_heads) for name, s in VIT_SIZES.items()}
    assert widths["vit_tiny"] == (192, 12, 3)
    assert widths["vit_small"] == (384, 12, 6)
    assert widths["vit_base"] == (768, 12, 12)
    assert widths["vit_large"] == (1024, 24, 16)
    constructor = backbone_constructor("vit_small", image_size=32)
    assert constructor.kwargs["mlp_dim"] == 4 * 384 and constructor.kwargs["patch_size"] == 4


def test_vit_patch_size_can_be_overridden() -> None:
    encoder, _ = build_backbone("vit_micro", image_size=32, patch_size=8)
    assert encoder.patch_size == 8 and encoder.seq_length == 4 * 4 + 1
    assert encoder(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_image_sizes_no_patch_divides_name_the_flag() -> None:
    with pytest.raises(ValueError, match=r"image size 25 .* --model.patch_size"):
        build_backbone("vit_micro", image_size=25)


def test_patch_size_on_a_convolutional_network_is_an_error() -> None:
    with pytest.raises(ValueError, match="--model.patch_size applies to ViTs"):
        build_backbone("resnet18", image_size=32, patch_size=4)


def test_torchvision_vits_are_built_for_the_image_size() -> None:
    # torchvision's default (224 px) would fail on 32 px images with "Wrong image height".
    constructor = backbone_constructor("vit_b_16", image_size=32)
    assert constructor.kwargs == {"weights": None, "image_size": 32}


def test_channels_last_is_for_convolutional_networks_only() -> None:
    assert benefits_from_channels_last(build_backbone("tiny_resnet", image_size=32)[0])
    assert not benefits_from_channels_last(build_backbone("vit_micro", image_size=32)[0])


def test_timm_models_by_name_are_random_and_headless() -> None:
    pytest.importorskip("timm")
    encoder, feature_dim = build_backbone("timm/test_vit", image_size=32, patch_size=4)
    assert feature_dim == 64
    assert encoder.patch_embed.img_size == (32, 32) and encoder.patch_embed.patch_size == (4, 4)
    assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    # A timm ResNet gets the CIFAR stem like torchvision's.
    resnet, width = build_backbone("timm/resnet18", image_size=32)
    assert isinstance(resnet.maxpool, nn.Identity) and resnet.conv1.stride == (1, 1) and width == 512
    assert resnet(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def test_unknown_names_suggest_from_both_libraries() -> None:
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match=r"Did you mean vit_small, .*timm/\w*_small\b") as error:
        build_backbone("vit_smal", image_size=32)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"Did you mean timm/vit_small_patch16_224"):
        build_backbone("vit_smal_patch16_224", image_size=32)
    with pytest.raises(ValueError, match=r"Unknown backbone 'timm/resnet1' .*timm/resnet18"):
        build_backbone("timm/resnet1", image_size=32)


def test_a_timm_name_without_timm_installed_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail, installed or not
    with pytest.raises(ValueError, match=r"timm/vit_small_patch16_224 needs timm.*pip install timm=="):
        build_backbone("timm/vit_small_patch16_224", image_size=32)
    with pytest.raises(ValueError, match="Did you mean resnet18"):  # suggestions still work
        build_backbone("resnt18", image_size=32)
