"""Fine-tuning from exported corrections: held-out comparison, keeping and removing, freezing parts."""

from __future__ import annotations

import json

import pytest
import torch

from reseg.cli import main
from reseg.data.dataset import load_training_set
from reseg.errors import ResegError
from reseg.train.finetune import split_held_out
from reseg.train.loop import TrainingConfig, iter_train
from reseg.zoo.catalogue import model_paths
from reseg.zoo.weights import load_model

SHORT = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "96", "96"]


def test_finetune_compares_on_held_out_scans_keeps_the_model_and_removes_it(corrections, user_models, capsys):
    assert main(["finetune", "--base", "lightreseg-oct", "--data", str(corrections), "-o", "my-oct", *SHORT]) == 0
    out = capsys.readouterr().out
    assert "Dice on 1 held-out scan(s), 2 slice(s)" in out
    assert "lightreseg-oct" in out and "my-oct" in out and "RNFL" in out and "mean Dice" in out

    assert model_paths()["my-oct"].parent == user_models  # in the catalogue at once
    card = load_model("my-oct", device="cpu").card
    assert card.parent == "lightreseg-oct" and card.training["last_epoch"] == 1
    comparison = card.metrics["held_out_comparison"]
    held_out = comparison["held_out_scans"]
    assert len(held_out) == 1 and held_out == card.training["validation_scans"]
    assert not set(held_out) & set(card.training["train_scans"])  # whole scans, never slices of training scans
    assert comparison["base"]["per_class"]["RNFL"]["dice"] is not None
    assert not list(user_models.glob(".finetune-*"))  # the staging folder is gone

    assert main(["finetune", "--base", "lightreseg-oct", "--data", str(corrections), "-o", "my-oct", *SHORT]) == 1
    assert "exists already" in capsys.readouterr().err

    assert main(["models", "--remove", "my-oct"]) == 0
    assert "my-oct" not in model_paths() and not list(user_models.iterdir())
    assert main(["models", "--remove", "lightreseg-oct"]) == 1
    assert "bundled" in capsys.readouterr().err and "lightreseg-oct" in model_paths()


def test_finetune_needs_two_scans_and_says_so(tmp_path, user_models, capsys):
    one_scan = tmp_path / "one"
    assert main(["phantom", str(one_scan), "--volumes", "1", "--bscans", "2", "--height", "224", "--width", "128"]) == 0
    assert main(["finetune", "--base", "lightreseg-oct", "--data", str(one_scan), "-o", "x", *SHORT]) == 1
    error = capsys.readouterr().err
    assert str(one_scan) in error and "at least two scans" in error


def test_held_out_share_is_whole_scans_and_fixed_by_the_seed(corrections):
    training_set = load_training_set([corrections])
    train, held_out = split_held_out(training_set, 0.4, seed=1)
    assert len(held_out.scans) == 2 and len(train.scans) == 3
    assert {s.name for s in held_out.scans} == {s.name for s in split_held_out(training_set, 0.4, seed=1)[1].scans}
    assert training_set.label_sets == held_out.label_sets and training_set.classes == train.classes


def test_frozen_parts_keep_their_weights_and_statistics(corrections, tmp_path):
    base = load_model("lightreseg-oct", device="cpu").network.state_dict()
    config = TrainingConfig(
        epochs=1,
        steps_per_epoch=2,
        batch_size=2,
        crop_size=(96, 96),
        device="cpu",
        base_model="lightreseg-oct",
        freeze=("encoder", "downsample"),
    )
    events = iter_train(load_training_set([corrections]), "frozen", tmp_path / "out", config)
    while True:
        try:
            next(events)
        except StopIteration as end:
            trained = end.value.state_dict()
            break
    for key, value in trained.items():
        unchanged = torch.equal(value.cpu(), base[key])
        assert unchanged == key.startswith(("encoder.", "downsample.")) or "num_batches" in key, key


def test_freezing_an_unknown_part_lists_the_parts(corrections, tmp_path):
    config = TrainingConfig(
        epochs=1, steps_per_epoch=1, batch_size=2, crop_size=(96, 96), device="cpu", freeze=("backbone",)
    )
    with pytest.raises(ResegError, match=r"backbone.*encoder.*decoder"):
        list(iter_train(load_training_set([corrections]), "x", tmp_path, config))


def test_finetune_refuses_data_with_other_classes(tmp_path, user_models, capsys):
    data = tmp_path / "ct"
    assert main(["phantom", str(data), "--volumes", "2", "--bscans", "1", "--height", "224", "--width", "128"]) == 0
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["classes"] = manifest["classes"][:9]
    (data / "dataset.json").write_text(json.dumps(manifest))
    assert main(["finetune", "--base", "lightreseg-oct", "--data", str(data), "-o", "y", *SHORT]) == 1
    assert "classes" in capsys.readouterr().err
