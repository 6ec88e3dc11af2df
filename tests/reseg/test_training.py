"""Training: loss semantics, scan-level splits, and a short real run that leaves a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reseg.classes import IGNORE_INDEX
from reseg.cli import main
from reseg.data.dataset import Scan, load_training_set, split_by_scan
from reseg.losses import DiceCrossEntropyLoss
from reseg.metrics import per_class_scores
from reseg.zoo import load_model


def test_ignored_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 16, 16)
    target = torch.randint(0, 4, (2, 16, 16))
    target[:, :8] = IGNORE_INDEX
    other_logits = logits.clone()
    other_logits[:, :, :8] = torch.randn(2, 4, 8, 16) * 10
    loss = DiceCrossEntropyLoss()
    assert torch.allclose(loss(logits, target), loss(other_logits, target))
    assert loss(logits, target) > loss(torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2) * 20.0, target)


def test_metrics_skip_ignored_pixels_and_score_perfect_predictions_one():
    target = np.random.default_rng(0).integers(0, 3, (2, 20, 20)).astype(np.uint8)
    scores = per_class_scores(target, target, 3)
    assert scores["dice"] == pytest.approx([1, 1, 1]) and scores["pixel_accuracy"] == pytest.approx([1, 1, 1])
    wrong = (target + 1) % 3
    masked = target.copy()
    masked[:] = IGNORE_INDEX
    masked[:, :, :10] = target[:, :, :10]
    prediction = np.where(np.arange(20) < 10, target, wrong)
    assert per_class_scores(prediction, masked, 3)["dice"] == pytest.approx([1, 1, 1])


def test_split_is_by_scan_and_reproducible():
    scans = [Scan(f"scan{i}", np.zeros((3, 4, 4)), np.zeros((3, 4, 4), np.uint8), (1, 1, 1)) for i in range(10)]
    train, validation = split_by_scan(scans, 0.2, seed=3)
    assert len(validation) == 2 and not {s.name for s in train} & {s.name for s in validation}
    assert [s.name for s in split_by_scan(scans, 0.2, seed=3)[1]] == [s.name for s in validation]
    assert len(split_by_scan(scans[:2], 0.1)[1]) == 1


def test_phantom_then_train_writes_a_model_that_loads(tmp_path, capsys):
    data = tmp_path / "phantoms"
    assert main(["phantom", str(data), "--volumes", "3", "--bscans", "2", "--height", "224", "--width", "128"]) == 0
    manifest = json.loads((data / "dataset.json").read_text())
    assert manifest["modality"] == "OCT" and len(manifest["items"]) == 3 and len(manifest["classes"]) == 10
    training_set = load_training_set([data])
    assert training_set.num_slices == 6 and training_set.modality == "OCT"

    assert main(["train", str(data), "--name", "tiny", "-o", str(tmp_path / "out"), "--epochs", "2",
                 "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "64", "64",
                 "--validation-fraction", "0.34"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "validation mean Dice" in out
    model = load_model(tmp_path / "out" / "tiny.json", device="cpu")
    card = model.card
    assert card.modality == "OCT" and card.num_classes == 10 and card.training["best_epoch"] in (1, 2)
    assert len(card.training["validation_scans"]) == 1 and len(card.training["train_scans"]) == 2
    assert set(card.metrics["validation"]["per_class_dice"]) == {c.name for c in card.classes}


def test_training_on_a_folder_without_labels_names_the_problem(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    assert main(["train", str(tmp_path), "--name", "x"]) == 1
    assert "expected the sub-folders images/ and labels/" in capsys.readouterr().err
