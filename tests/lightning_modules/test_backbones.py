import pytest
import torch
from torch import nn

from lightning_modules.backbones import available_backbones, build_backbone


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
    assert {"resnet18", "resnet50", "tiny_resnet"} <= set(names)
