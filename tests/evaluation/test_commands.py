"""Every evaluate.py command, in-process, against a checkpoint that train.py wrote (conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from datamodules import ImageFolderDataModule
from evaluation.cli import main
from evaluation.data import LabelledTrainSplit, evaluation_split, extract_features, loader
from evaluation.knn import knn_accuracy
from lightning_modules.backbones import apply_cifar_stem
from lightning_modules.simclr import SimCLR
from tests.evaluation.conftest import TEST_PER_CLASS, TRAIN_PER_CLASS, PretrainedRun, data_flags


def test_knn_reads_the_data_section_of_the_checkpoints_run_config_and_matches_a_direct_computation(
    pretrained_run: PretrainedRun, tmp_path: Path
) -> None:
    # No data flag: the config.yaml of the checkpoint's run is used. It names trainer, model, probe, ...
    # sections; only its data section is read.
    output = tmp_path / "knn"
    results = main(["knn", "--ckpt", str(pretrained_run.checkpoint), "--k", "5", "--output_dir", str(output)])

    datamodule = ImageFolderDataModule(
        str(pretrained_run.data_root), batch_size=16, num_workers=0, image_size=32
    )
    encoder = SimCLR.load_from_checkpoint(pretrained_run.checkpoint, map_location="cpu").encoder
    bank, bank_labels = extract_features(
        encoder, loader(LabelledTrainSplit(datamodule).dataset(), 16, 0), "cpu"
    )
    queries, labels = extract_features(encoder, loader(evaluation_split(datamodule), 16, 0), "cpu")
    expected = knn_accuracy(bank, bank_labels, queries, labels, num_classes=3, k=5, temperature=0.1)

    assert results["metrics"]["top1"] == pytest.approx(expected)
    assert (results["train_samples"], results["test_samples"]) == (3 * TRAIN_PER_CLASS, 3 * TEST_PER_CLASS)
    assert json.loads((output / "results.json").read_text()) == results


def test_linear_writes_results_pictures_and_a_classifier_that_predict_agrees_with(
    pretrained_run: PretrainedRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "linear"
    results = main(
        [
            "linear",
            "--ckpt",
            str(pretrained_run.checkpoint),
            *data_flags(pretrained_run.data_root),
            "--epochs",
            "30",
            "--output_dir",
            str(output),
        ]
    )
    matrix = torch.tensor(results["confusion_matrix"])
    assert matrix.sum(dim=1).tolist() == [TEST_PER_CLASS] * 3
    assert results["metrics"]["top1"] == pytest.approx(matrix.diagonal().sum().item() / matrix.sum().item())
    assert results["metrics"]["top5"] == 1.0  # top-5 of 3 classes is capped to top-3
    for name in ("results.json", "confusion_matrix.png", "embedding_tsne.png", "classifier.pt"):
        assert (output / name).stat().st_size > 0
    assert "top1" in capsys.readouterr().out

    test_folder = pretrained_run.data_root / "test"
    predictions = main(
        [
            "predict",
            "--ckpt",
            str(output / "classifier.pt"),
            str(test_folder),
            "--top_k",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert len(predictions) == 3 * TEST_PER_CLASS
    correct = sum(Path(p["image"]).parent.name == p["classes"][0] for p in predictions)
    # Same model, same preprocessing as the evaluation: the same accuracy.
    assert correct / len(predictions) == pytest.approx(results["metrics"]["top1"])
    for prediction in predictions:
        assert prediction["probabilities"][0] >= prediction["probabilities"][1] > 0


def test_finetune_saves_class_balanced_seeded_subsets_with_each_result(
    pretrained_run: PretrainedRun, tmp_path: Path
) -> None:
    output = tmp_path / "finetune"
    results = main(
        [
            "finetune",
            "--ckpt",
            str(pretrained_run.checkpoint),
            *data_flags(pretrained_run.data_root),
            "--fractions",
            "[0.25, 1.0]",
            "--finetune.epochs",
            "1",
            "--finetune.num_workers",
            "0",
            "--finetune.seed",
            "7",
            "--output_dir",
            str(output),
        ]
    )
    quarter = json.loads((output / "25pct" / "subset.json").read_text())
    assert quarter["seed"] == 7
    labels = LabelledTrainSplit(
        ImageFolderDataModule(str(pretrained_run.data_root), batch_size=16, num_workers=0, image_size=32),
        include_held_out=True,  # the subsets index the whole training split, as fine-tuning reads it
    ).all_labels
    assert torch.bincount(torch.tensor(labels[quarter["indices"]])).tolist() == [3, 3, 3]
    assert len(json.loads((output / "100pct" / "subset.json").read_text())["indices"]) == 3 * TRAIN_PER_CLASS
    assert results["fractions"]["25pct"]["labelled_samples"] == 9
    assert (output / "25pct" / "classifier.pt").is_file()
    for entry in results["fractions"].values():
        assert 0.0 <= entry["metrics"]["top1"] <= 1.0 and len(entry["epoch_losses"]) == 1


def test_random_init_evaluates_fresh_weights_of_the_same_architecture(
    pretrained_run: PretrainedRun, tmp_path: Path
) -> None:
    results = main(
        [
            "linear",
            "--ckpt",
            str(pretrained_run.checkpoint),
            *data_flags(pretrained_run.data_root),
            "--random_init",
            "true",
            "--epochs",
            "1",
            "--embedding_plot",
            "false",
            "--output_dir",
            str(tmp_path / "random"),
        ]
    )
    assert results["initialisation"] == "random"
    saved = torch.load(tmp_path / "random" / "classifier.pt", weights_only=False)["state_dict"]
    pretrained = SimCLR.load_from_checkpoint(
        pretrained_run.checkpoint, map_location="cpu"
    ).encoder.state_dict()
    assert not torch.equal(saved["encoder.conv1.weight"], pretrained["conv1.weight"])


def test_an_output_folder_holding_results_is_never_reused(
    pretrained_run: PretrainedRun, tmp_path: Path
) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="never overwrite"):
        main(
            [
                "knn",
                "--ckpt",
                str(pretrained_run.checkpoint),
                *data_flags(pretrained_run.data_root),
                "--output_dir",
                str(tmp_path / "old"),
            ]
        )
    assert (tmp_path / "old" / "results.json").read_text() == "{}"


def _resnet18_checkpoint(path: Path) -> SimCLR:
    module = SimCLR(backbone="resnet18", image_size=32)
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return module


def test_export_loads_into_plain_torchvision_resnet18_with_the_cifar_stem(tmp_path: Path) -> None:
    module = _resnet18_checkpoint(tmp_path / "resnet18.ckpt").eval()
    meta = main(
        ["export", "--ckpt", str(tmp_path / "resnet18.ckpt"), "--output_dir", str(tmp_path / "export")]
    )
    assert meta["cifar_stem"] is True and meta["feature_dim"] == 512
    state_dict = torch.load(tmp_path / "export" / "encoder.pt", weights_only=True)

    # Without this project: a plain torchvision model, the stem rebuilt, the head absent from the export.
    plain = torchvision.models.resnet18()
    apply_cifar_stem(plain)
    missing, unexpected = plain.load_state_dict(state_dict, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    plain.fc = nn.Identity()
    plain.load_state_dict(state_dict)  # strict once the head is Identity
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain.eval()(images), module(images))

    # Without the stem the 3x3 conv1 weights do not fit torchvision's 7x7 one.
    with pytest.raises(RuntimeError, match="conv1.weight"):
        torchvision.models.resnet18().load_state_dict(state_dict, strict=False)


def test_missing_checkpoint_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--ckpt"):
        main(["export", "--ckpt", str(tmp_path / "nothing.ckpt"), "--output_dir", str(tmp_path / "export")])


def test_pretraining_draws_curves_and_view_pairs_and_checkpoints_the_curve_history(
    pretrained_run: PretrainedRun,
) -> None:
    for name in ("curves.png", "view_pairs.png"):
        assert (pretrained_run.run_dir / name).read_bytes()[:4] == b"\x89PNG"
    callbacks = torch.load(pretrained_run.checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    history = next(state["history"] for key, state in callbacks.items() if key.startswith("TrainingCurves"))
    assert {"train/loss", "val/probe_top1", "val/knn_top1", "val/rankme"} <= set(history)
    assert {"train/alignment", "train/uniformity"} <= set(history)
