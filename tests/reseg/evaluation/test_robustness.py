"""`reseg evaluate --robustness`: one labelled OCT set, scored once per device style."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg.cli import main
from reseg.data.dataset import load_training_set
from reseg.data.device_styles import DEVICE_STYLES
from reseg.errors import InputError
from reseg.evaluation.evaluate import evaluate_model
from reseg.evaluation.robustness import robustness, styled_set
from reseg.zoo.weights import load_model


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("robustness") / "data"
    arguments = ["phantom", str(folder), "--volumes", "1", "--bscans", "2", "--height", "496", "--width", "256"]
    assert main([*arguments, "--seed", "9001"]) == 0
    return folder


def test_styled_sets_keep_the_labels_and_are_repeatable(phantom_set):
    training_set = load_training_set([phantom_set])
    style = next(s for s in DEVICE_STYLES if s.name == "heavy_speckle")
    first, again = styled_set(training_set, style), styled_set(training_set, style)
    original, styled = training_set.scans[0], first.scans[0]
    assert np.array_equal(styled.labels, original.labels) and styled.image.dtype == np.uint8
    assert not np.array_equal(styled.image, original.image)
    assert np.array_equal(styled.image, again.scans[0].image)


@pytest.mark.slow
def test_the_report_scores_every_style_against_the_plain_evaluation(phantom_set, tmp_path, capsys):
    training_set = load_training_set([phantom_set])
    model = load_model("lightreseg-oct", device="cpu")
    report = robustness(model, training_set, DEVICE_STYLES[:3])
    assert report.styles == ["spectralis", "log_display", "gamma_display"]
    plain = evaluate_model(model, training_set)
    assert report.mean_dice[0] == pytest.approx(plain.summary["mean_dice"])  # the reference is the data as it is
    assert report.largest_drop == pytest.approx(report.mean_dice[0] - min(report.mean_dice[1:]))

    output = tmp_path / "robustness.json"
    assert main(["evaluate", "lightreseg-oct", str(phantom_set), "--robustness", "-o", str(output)]) == 0
    written = json.loads(output.read_text())
    assert list(written["styles"]) == [style.name for style in DEVICE_STYLES]
    assert written["styles"]["spectralis"]["drop"] == 0.0
    assert written["within_tolerance"] == (written["largest_drop"] <= 0.03)
    assert "largest drop" in capsys.readouterr().out


def test_the_report_refuses_what_it_cannot_restyle(phantom_set, tmp_path, capsys):
    model = load_model("lightreseg-oct", device="cpu")
    ct = load_training_set([phantom_set])
    ct.modality = "CT"
    with pytest.raises(InputError, match="defined for OCT"):
        robustness(model, ct)
    floats = load_training_set([phantom_set])
    floats.scans[0].image = floats.scans[0].image.astype(np.float32) * 10
    with pytest.raises(InputError, match="not a 0-255 display image"):
        robustness(model, floats)
    assert main(["evaluate", "lightreseg-oct", str(tmp_path / "missing.vol"), "--robustness"]) != 0
    assert "training-set folder" in capsys.readouterr().err
