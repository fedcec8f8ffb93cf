"""Every evaluate.py command on a ViT pretrained through the real command line, as on a ResNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from evaluation.cli import main
from evaluation.models import EncoderSpec
from evaluation.predict import load_classifier
from lightning_modules.simclr import SimCLR
from tests.evaluation.conftest import TEST_PER_CLASS, PretrainedRun, pretrain


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory: pytest.TempPathFactory) -> PretrainedRun:
    return pretrain(tmp_path_factory.mktemp("vit"), "--model.backbone", "vit_micro")


def test_knn_linear_and_predict_agree_on_a_vit(vit_run: PretrainedRun, tmp_path: Path) -> None:
    ckpt = ["--ckpt", str(vit_run.checkpoint)]
    knn = main(["knn", *ckpt, "--k", "5", "--output_dir", str(tmp_path / "knn")])
    assert 0.0 <= knn["metrics"]["top1"] <= 1.0

    linear = main(["linear", *ckpt, "--epochs", "5", "--embedding_plot", "false",
                   "--output_dir", str(tmp_path / "linear")])
    model, meta = load_classifier(tmp_path / "linear" / "classifier.pt")
    assert (meta.encoder.backbone, meta.encoder.feature_dim) == ("vit_micro", 32)
    assert model.encoder.patch_size == 4
    predictions = main(["predict", "--ckpt", str(tmp_path / "linear" / "classifier.pt"),
                        str(vit_run.data_root / "test"), "--device", "cpu"])
    assert len(predictions) == 3 * TEST_PER_CLASS
    correct = sum(Path(p["image"]).parent.name == p["classes"][0] for p in predictions)
    assert correct / len(predictions) == pytest.approx(linear["metrics"]["top1"])


def test_finetune_trains_the_vit_end_to_end(vit_run: PretrainedRun, tmp_path: Path) -> None:
    results = main(["finetune", "--ckpt", str(vit_run.checkpoint), "--fractions", "[1.0]",
                    "--finetune.epochs", "1", "--finetune.num_workers", "0",
                    "--output_dir", str(tmp_path / "finetune")])
    model, _ = load_classifier(tmp_path / "finetune" / "100pct" / "classifier.pt")
    pretrained = torch.load(vit_run.checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    # The encoder itself moved, not only the head.
    assert not torch.equal(model.encoder.class_token, pretrained["encoder.class_token"])
    assert len(results["fractions"]["100pct"]["epoch_losses"]) == 1


def test_encoder_spec_keeps_a_chosen_patch_size_and_reads_specs_saved_before_it_existed() -> None:
    spec = EncoderSpec.of(SimCLR(backbone="vit_micro", image_size=32, patch_size=8))
    assert spec.patch_size == 8 and spec.build().patch_size == 8
    older = EncoderSpec(backbone="tiny_resnet", image_size=32, cifar_stem=None, feature_dim=128)
    assert older.patch_size is None and older.build()(torch.randn(1, 3, 32, 32)).shape == (1, 128)
