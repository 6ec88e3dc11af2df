"""Training: loss semantics, scan-level splits, and a short real run that leaves a loadable model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reseg.classes import IGNORE_INDEX
from reseg.cli import main
from reseg.data.dataset import Scan, load_training_set, split_by_scan
from reseg.evaluation.metrics import per_class_scores
from reseg.train.losses import DiceCrossEntropyLoss
from reseg.zoo.weights import load_model


def test_ignored_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 16, 16)
    target = torch.randint(0, 4, (2, 16, 16))
    target[:, :8] = IGNORE_INDEX
    other_logits = logits.clone()
    other_logits[:, :, :8] = torch.randn(2, 4, 8, 16) * 10
    loss = DiceCrossEntropyLoss()
    assert torch.allclose(loss(logits, target), loss(other_logits, target))
    assert loss(logits, target) > loss(
        torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2) * 20.0, target
    )


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

    assert (
        main(
            [
                "train",
                str(data),
                "--name",
                "tiny",
                "-o",
                str(tmp_path / "out"),
                "--epochs",
                "2",
                "--steps-per-epoch",
                "2",
                "--batch-size",
                "2",
                "--crop",
                "64",
                "64",
                "--validation-fraction",
                "0.34",
            ]
        )
        == 0
    )
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


def test_marginal_likelihood_reduces_to_cross_entropy_on_fully_labelled_data():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 12, 12)
    target = torch.randint(0, 5, (2, 12, 12))
    partial = DiceCrossEntropyLoss(label_sets={254: [0, 1, 2, 3]})
    plain_ce = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(
        partial(logits, target) - partial.dice(logits, target[:, None], mask=torch.ones_like(target[:, None]).float()),
        plain_ce,
        atol=1e-5,
    )
    singleton = target.clone()
    singleton[target == 3] = 250  # the value 250 means "class 3" exactly
    one_class = DiceCrossEntropyLoss(dice_weight=0, label_sets={250: [3]})
    assert torch.allclose(one_class(logits, singleton), plain_ce, atol=1e-5)


def test_partial_labels_only_ask_for_the_candidate_set():
    """A pixel labelled "one of {0, 1, 2}" costs nothing more when the mass moves among those classes."""
    target = torch.full((1, 4, 4), 254)
    loss = DiceCrossEntropyLoss(label_sets={254: [0, 1, 2]})
    inside_a = torch.tensor([5.0, -5, -5, -5])[None, :, None, None].expand(1, 4, 4, 4)
    inside_b = torch.tensor([-5.0, -5, 5, -5])[None, :, None, None].expand(1, 4, 4, 4)
    outside = torch.tensor([-5.0, -5, -5, 5])[None, :, None, None].expand(1, 4, 4, 4)
    assert torch.allclose(loss(inside_a, target), loss(inside_b, target))
    assert loss(outside, target) > loss(inside_a, target) + 5
    logits = torch.zeros(1, 4, 4, 4, requires_grad=True)
    loss(logits, target).backward()
    assert logits.grad[0, 3].gt(0).all() and logits.grad[0, :3].lt(0).all()  # push mass into the set


def test_training_set_with_partial_labels_trains_and_validates(tmp_path, capsys):
    data = tmp_path / "partial"
    assert main(["phantom", str(data), "--volumes", "2", "--bscans", "2", "--height", "224", "--width", "128"]) == 0
    manifest = json.loads((data / "dataset.json").read_text())
    manifest["label_sets"] = {"254": list(range(9))}  # "some class other than fluid", as in the Duke DME data
    (data / "dataset.json").write_text(json.dumps(manifest))
    import tifffile

    for item in manifest["items"]:
        labels = tifffile.imread(data / item["label"])
        tifffile.imwrite(data / item["label"], np.where(labels == 9, 9, 254).astype(np.uint8))
    training_set = load_training_set([data])
    assert training_set.label_sets == {254: list(range(9))}
    assert (
        main(
            [
                "train",
                str(data),
                "--name",
                "partial",
                "-o",
                str(tmp_path / "out"),
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "2",
                "--crop",
                "64",
                "64",
                "--validation-fraction",
                "0.5",
            ]
        )
        == 0
    )
    card = load_model(tmp_path / "out" / "partial.json", device="cpu").card
    assert card.training["label_sets"] == {"254": list(range(9))}
    assert card.metrics["validation"]["per_class_dice"]["RNFL"] is None  # no exact layer labels to score


def test_training_from_a_ct_model_sees_slices_at_its_spacing(tmp_path):
    """l2gnet-ct was trained on 3 mm pixels and inference resamples every scan to them; training it further
    on 1.5 mm corrections must do the same, or it learns organs at twice the size it will meet them."""
    from reseg.data.ct_phantom import make_ct_phantom
    from reseg.data.dataset import write_training_set
    from reseg.train.loop import TrainingConfig, iter_train

    fine = [make_ct_phantom(n_slices=3, size=128, spacing_mm=1.5, seed=seed) for seed in (1, 2)]
    data = write_training_set(
        tmp_path / "fine",
        [(f"ct{i}", p.image, p.labels, p.spacing) for i, p in enumerate(fine)],
        "CT",
        "CT phantoms at 1.5 mm",
    )
    config = TrainingConfig(
        base_model="l2gnet-ct", epochs=1, steps_per_epoch=1, batch_size=2, crop_size=(96, 96), device="cpu"
    )
    for _ in iter_train(load_training_set([data]), "ct-fine", tmp_path / "out", config):
        pass
    card = json.loads((tmp_path / "out" / "ct-fine.json").read_text())
    assert card["input_spacing"] == [3.0, 3.0]
    assert card["training"]["config"]["crop_size"] == [64, 64]  # 128 px at 1.5 mm are 64 px at 3 mm


def test_slices_of_unknown_spacing_are_not_resampled():
    from reseg.train.data import model_slices

    labels = np.full((1, 40, 40), 254, np.uint8)
    labels[0, :5] = IGNORE_INDEX
    known = Scan("a/known", np.zeros((1, 40, 40), np.float32), labels, (1.0, 1.5, 1.5))
    unknown = Scan("a/unknown", np.zeros((1, 40, 40), np.float32), labels, (1.0, 1.0, 1.0), spacing_known=False)
    normalization = {"method": "percentile", "lower": 1.0, "upper": 99.0}
    images, resampled = model_slices([known, unknown], normalization, [3.0, 3.0])
    assert [image.shape for image in images] == [(20, 20), (40, 40)]
    assert set(np.unique(resampled[0])) == {254, IGNORE_INDEX}  # nearest neighbour keeps label values


def test_every_training_folder_gets_an_equal_share_of_the_batches(tmp_path):
    """A handful of corrections beside a large set must not drown; folders of the same name stay apart."""
    from reseg.train.data import folder_balanced_weights

    for parent, volumes in (("big", 6), ("small", 1)):
        assert (
            main(
                [
                    "phantom",
                    str(tmp_path / parent / "export"),
                    "--volumes",
                    str(volumes),
                    "--bscans",
                    "2",
                    "--height",
                    "224",
                    "--width",
                    "64",
                ]
            )
            == 0
        )
    training_set = load_training_set([tmp_path / "big" / "export", tmp_path / "small" / "export"])
    weights = np.array(folder_balanced_weights(training_set.scans))
    slices_big = 6 * 2
    assert len(weights) == slices_big + 2
    assert weights[:slices_big].sum() == pytest.approx(weights[slices_big:].sum())


def test_training_is_reproducible_and_gives_back_the_callers_random_state(corrections, tmp_path):
    """Inside napari the process's random generators and MONAI's settings are the user's session."""
    from monai.data import get_track_meta

    from reseg.train.loop import TrainingConfig, iter_train

    training_set = load_training_set([corrections])
    config = TrainingConfig(epochs=1, batch_size=2, crop_size=(64, 64), steps_per_epoch=2, seed=5, device="cpu")
    torch.manual_seed(123)
    np.random.seed(321)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    for run in range(2):
        for _ in iter_train(training_set, f"run{run}", tmp_path / f"run{run}", config):
            pass
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1]) and get_track_meta()
    weights = [load_model(tmp_path / f"run{run}" / f"run{run}.safetensors").network.state_dict() for run in range(2)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_the_card_gets_the_post_processing_asked_for_and_a_wrong_step_stops_before_training(corrections, tmp_path):
    from reseg.errors import CheckpointError
    from reseg.train.loop import TrainingConfig, iter_train

    training_set = load_training_set([corrections])
    settings = {"epochs": 1, "batch_size": 2, "crop_size": (64, 64), "steps_per_epoch": 1, "device": "cpu"}
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="--postprocessing: names unknown post-processing 'smooth'"):
        next(iter_train(training_set, "m", out, TrainingConfig(**settings, postprocessing=("smooth",))))
    assert not out.exists()
    for _ in iter_train(training_set, "m", out, TrainingConfig(**settings, postprocessing=("layer_surfaces",))):
        pass
    assert load_model(out / "m.json").card.postprocessing == ["layer_surfaces"]
