"""A long training run can be done in parts: stopped after an epoch and resumed, it ends where it would have."""

from __future__ import annotations

import pytest
import torch

from reseg.cli import main
from reseg.data.dataset import load_training_set
from reseg.errors import InputError
from reseg.train.checkpoint import checkpoint_path
from reseg.train.loop import EpochReport, TrainingConfig, iter_train
from reseg.zoo.weights import load_model

CONFIG = {"epochs": 3, "batch_size": 2, "crop_size": (64, 64), "steps_per_epoch": 2, "seed": 3, "device": "cpu"}


def _weights(folder, name):
    return load_model(folder / f"{name}.safetensors").network.state_dict()


def _run_until(training_set, name, folder, config, stop_after: int | None) -> None:
    """Run iter_train; with `stop_after`, abandon the run after that epoch's report (as a kill would)."""
    events = iter_train(training_set, name, folder, config)
    for event in events:
        if stop_after is not None and isinstance(event, EpochReport) and event.epoch == stop_after:
            events.close()
            return


@pytest.mark.slow
def test_a_run_resumed_after_an_epoch_ends_with_the_weights_of_an_uninterrupted_run(corrections, tmp_path):
    training_set = load_training_set([corrections])
    # keep_best=False keeps the last epoch, so the saved weights are those after epoch 3 in both runs
    config = TrainingConfig(**CONFIG, keep_best=False)
    _run_until(training_set, "whole", tmp_path / "whole", config, stop_after=None)
    assert not checkpoint_path(tmp_path / "whole", "whole").exists()  # a finished run leaves none

    _run_until(training_set, "parts", tmp_path / "parts", config, stop_after=2)
    checkpoint = checkpoint_path(tmp_path / "parts", "parts")
    assert checkpoint.exists()
    first_part = _weights(tmp_path / "parts", "parts")
    resumed = TrainingConfig(**CONFIG, keep_best=False, resume=True)
    events = iter_train(training_set, "parts", tmp_path / "parts", resumed)
    epochs = [event.epoch for event in events if isinstance(event, EpochReport)]
    assert epochs == [3]  # only what was left
    whole, parts = _weights(tmp_path / "whole", "whole"), _weights(tmp_path / "parts", "parts")
    assert all(torch.equal(whole[key], parts[key]) for key in whole)
    assert not all(torch.equal(first_part[key], parts[key]) for key in whole)  # epoch 3 did train
    assert not checkpoint.exists()
    card = load_model(tmp_path / "parts" / "parts.json").card
    assert card.training["last_epoch"] == 3


def test_resuming_with_other_settings_names_the_checkpoint_and_the_difference(corrections, tmp_path):
    training_set = load_training_set([corrections])
    _run_until(training_set, "m", tmp_path, TrainingConfig(**CONFIG), stop_after=1)
    changed = TrainingConfig(**{**CONFIG, "batch_size": 3}, resume=True)
    with pytest.raises(InputError) as error:
        list(iter_train(training_set, "m", tmp_path, changed))
    assert "m.checkpoint.pt" in str(error.value) and "batch_size 2 -> 3" in str(error.value)


def test_without_resume_a_left_checkpoint_is_not_used_and_the_cli_says_when_it_continues(corrections, tmp_path, capsys):
    training_set = load_training_set([corrections])
    _run_until(training_set, "m", tmp_path, TrainingConfig(**CONFIG), stop_after=1)
    arguments = [
        "train",
        str(corrections),
        "--name",
        "m",
        "-o",
        str(tmp_path),
        "--epochs",
        "3",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "2",
        "--crop",
        "64",
        "64",
        "--seed",
        "3",
        "--device",
        "cpu",
    ]
    assert main([*arguments, "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"continuing from {checkpoint_path(tmp_path, 'm')}" in out
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert main(arguments) == 0  # no checkpoint left; a fresh run trains all epochs
    assert "epoch 1/3" in capsys.readouterr().out
