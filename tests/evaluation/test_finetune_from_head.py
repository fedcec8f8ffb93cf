"""SimCLR v2's fine-tuning from the projection head (`evaluate.py finetune --from_head_layer K`), on a
checkpoint that train.py wrote with a 3-layer head; export and predict keep working with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from evaluation.cli import main
from evaluation.models import ClassifierMeta, EncoderClassifier, EncoderSpec, save_classifier
from evaluation.predict import load_classifier
from lightning_modules.simclr import ProjectionHead, SimCLR
from tests.evaluation.conftest import TEST_PER_CLASS, PretrainedRun, data_flags, pretrain
from tests.evaluation.test_bad_inputs import one_error_line

HIDDEN = 32


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory: pytest.TempPathFactory) -> PretrainedRun:
    return pretrain(
        tmp_path_factory.mktemp("v2"),
        "--model.projection_layers", "3",
        "--model.projection_hidden_dim", str(HIDDEN),
    )  # fmt: skip


def test_first_layers_are_the_heads_own_modules_up_to_the_kth_relu() -> None:
    head = ProjectionHead(input_dim=8, hidden_dim=16, output_dim=4, num_layers=3, batch_norm=True)
    assert [type(m).__name__ for m in head.first_layers(1)] == ["Linear", "BatchNorm1d", "ReLU"]
    assert len(head.first_layers(2)) == 6 and len(head.first_layers(0)) == 0
    assert head.first_layers(3)[6] is head[6]  # the head's output layer itself, not a copy
    assert list(head.first_layers(2).state_dict()) == [
        k for k in head.state_dict() if int(k.split(".")[0]) < 6
    ]
    with pytest.raises(ValueError, match="has 3 layers"):
        head.first_layers(4)


def finetune(run: PretrainedRun, output: Path, *flags: str) -> dict:
    return main([
        "finetune", "--ckpt", str(run.checkpoint), *data_flags(run.data_root), "--fractions", "[1.0]",
        "--finetune.epochs", "2", "--finetune.num_workers", "0", "--output_dir", str(output), *flags,
    ])  # fmt: skip


def test_fine_tuning_from_the_first_head_layer_trains_it_and_predict_rebuilds_it(
    v2_run: PretrainedRun, tmp_path: Path
) -> None:
    output = tmp_path / "ft"
    results = finetune(v2_run, output, "--from_head_layer", "1")
    assert results["from_head_layer"] == 1
    saved = torch.load(output / "100pct" / "classifier.pt", weights_only=True)
    pretrained = SimCLR.load_from_checkpoint(v2_run.checkpoint, map_location="cpu")
    # Encoder, then the head's Linear-BN-ReLU (its pretrained weights, fine-tuned), then a new classifier.
    assert saved["state_dict"]["head.weight"].shape == (3, HIDDEN)
    start = pretrained.projection_head[0].weight
    assert saved["state_dict"]["projection.0.weight"].shape == start.shape
    assert not torch.equal(saved["state_dict"]["projection.0.weight"], start)  # it was trained
    assert "projection.3.weight" not in saved["state_dict"]  # the second layer was not kept
    assert saved["meta"]["head_layers"]["count"] == 1

    predictions = main(
        ["predict", "--ckpt", str(output / "100pct" / "classifier.pt"), str(v2_run.data_root / "test")]
    )
    correct = sum(Path(p["image"]).parent.name == p["classes"][0] for p in predictions)
    assert len(predictions) == 3 * TEST_PER_CLASS
    # Same model, same preprocessing as the evaluation: the same accuracy.
    assert correct / len(predictions) == pytest.approx(results["fractions"]["100pct"]["metrics"]["top1"])


def test_a_layer_the_head_does_not_have_is_one_error_line_and_no_folder(
    v2_run: PretrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    argv = [
        "finetune",
        "--ckpt",
        str(v2_run.checkpoint),
        "--from_head_layer",
        "4",
        "--output_dir",
        str(output),
    ]
    line = one_error_line(capsys, argv)
    assert "--from_head_layer 4" in line and "which has 3" in line and "use 0" in line
    assert not output.exists()


def test_export_of_a_three_layer_head_checkpoint_keeps_the_encoder_only(
    v2_run: PretrainedRun, tmp_path: Path
) -> None:
    meta = main(["export", "--ckpt", str(v2_run.checkpoint), "--output_dir", str(tmp_path / "export")])
    state_dict = torch.load(tmp_path / "export" / "encoder.pt", weights_only=True)
    encoder = SimCLR.load_from_checkpoint(v2_run.checkpoint, map_location="cpu").encoder
    assert state_dict.keys() == encoder.state_dict().keys()
    assert (
        json.loads((tmp_path / "export" / "encoder.json").read_text())["feature_dim"] == meta["feature_dim"]
    )


def test_a_classifier_saved_before_head_layers_existed_still_loads(tmp_path: Path) -> None:
    spec = EncoderSpec("tiny_resnet", 16, True, 128)
    model = EncoderClassifier(spec.build(), spec.feature_dim, 2)
    assert not any(key.startswith("projection") for key in model.state_dict())
    save_classifier(
        model, ClassifierMeta(spec, ["a", "b"], 16, (0.5,) * 3, (0.2,) * 3, 16, "linear"), tmp_path / "c.pt"
    )
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    del saved["meta"]["head_layers"]  # what older versions wrote
    torch.save(saved, tmp_path / "old.pt")
    loaded, meta = load_classifier(tmp_path / "old.pt")
    assert meta.head_layers is None
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(loaded(images), model.eval()(images))
