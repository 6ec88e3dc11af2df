"""`reseg evaluate`: region and boundary metrics of a model or of saved predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from reseg.classes import OCT_BOUNDARIES
from reseg.cli import main
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_errors, boundary_rows
from reseg.evaluation.metrics import per_class_scores


def test_boundary_rows_follow_the_phantoms_true_surfaces():
    phantom = make_oct_phantom(n_bscans=2, height=224, width=96, seed=3, fluid=False)
    rows = boundary_rows(phantom.labels)
    ilm, bm = rows[0], rows[-1]
    assert np.all(np.isfinite(ilm)) and np.all(bm > ilm)
    shifted = np.zeros_like(phantom.labels)
    shifted[:, 2:] = phantom.labels[:, :-2]  # everything 2 rows lower, vitreous filling in at the top
    errors = boundary_errors([shifted], [phantom.labels], axial_mm=0.00387)
    assert set(errors) == set(OCT_BOUNDARIES)
    assert all(abs(e["mae_px"] - 2) < 1e-6 and abs(e["mae_um"] - 7.74) < 1e-3 for e in errors.values())


def test_evaluate_a_prediction_folder_and_a_model(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["phantom", str(data), "--volumes", "1", "--bscans", "2", "--height", "224", "--width", "160"]) == 0
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    truth = tifffile.imread(data / "labels" / "phantom_000.tif")
    tifffile.imwrite(predictions / "phantom_000.tif", truth)
    assert main(["evaluate", str(predictions), str(data), "-o", str(tmp_path / "perfect.json")]) == 0
    report = json.loads((tmp_path / "perfect.json").read_text())
    assert report["mean_dice"] == 1.0 and report["miou"] == 1.0 and report["mpa"] == 1.0
    assert report["per_class"]["RNFL"]["hd95_mm"] == 0.0
    assert report["boundaries"]["ILM"]["mae_px"] == 0.0
    assert report["out_of_order_a_scans"] == 0
    assert report["fluid_pixels"] == int((truth == 9).sum()) > 0
    assert "mean Dice 1.000" in capsys.readouterr().out

    broken = truth.copy()
    broken[0, :10, 7] = 8  # choroid above the retina in one A-scan
    tifffile.imwrite(predictions / "phantom_000.tif", broken)
    assert main(["evaluate", str(predictions), str(data), "-o", str(tmp_path / "broken.json")]) == 0
    assert json.loads((tmp_path / "broken.json").read_text())["out_of_order_a_scans"] == 1
    assert "A-scans out of layer order: 1" in capsys.readouterr().out

    assert main(["evaluate", "lightreseg-oct", str(data), "-o", str(tmp_path / "model.json")]) == 0
    model_report = json.loads((tmp_path / "model.json").read_text())
    assert 0.6 < model_report["mean_dice"] < 1.0
    assert model_report["boundaries"]["BM"]["mae_um"] is not None


def test_partial_labels_score_only_the_classes_they_rule_out():
    # Duke-style labels: fluid (2) where marked, elsewhere "one of 0, 1" (254), one corner never reviewed (255).
    truth = np.full((2, 8, 8), 254, np.uint8)
    truth[0, 2:4, 2:4] = 2
    truth[1, 0, :] = 255
    prediction = np.zeros_like(truth)
    prediction[0, 2:4, 2:4] = 2  # the fluid found
    prediction[0, 5:7, 5:7] = 2  # false fluid where the grader said "not fluid"
    prediction[1, 4, 4] = 2  # false fluid on a slice without fluid
    prediction[1, 0, :] = 2  # "fluid" where nobody looked: not an error
    prediction[0, 0, :] = 1  # class 1 inside "one of 0, 1": no evidence either way
    scores = per_class_scores(prediction, truth, 3, label_sets={254: [0, 1]})
    assert scores["dice"][2] == pytest.approx(8 / 12)  # slice 0 only: slices without fluid have no Dice
    assert scores["dice_pooled"][2] == pytest.approx(8 / 13)  # pooled: the slice-1 false positive counts
    assert np.isnan(scores["dice"][1]) and np.isnan(scores["dice"][0])
    assert scores["pixel_accuracy"][2] == 1.0
