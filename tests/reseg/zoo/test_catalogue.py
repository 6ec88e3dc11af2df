"""The model catalogue: which models suit a scan, the warning before a mismatch, and that choosing one needs
no torch."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from reseg.errors import CheckpointError, DeviceMemoryError, ExportClash, InputError
from reseg.zoo.catalogue import modality_warning, preferred_model, resolve_card, suits


@pytest.mark.parametrize(
    ("card", "scan", "expected"),
    [
        ("OCT", "OCT", True),
        ("OCT", "unknown", True),
        ("OCT", "CT", False),
        ("CT", "CT", True),
        ("CT", "unknown", False),
        ("CT", "OCT", False),
    ],
)
def test_which_model_suits_which_scan(card, scan, expected):
    assert suits(card, scan) is expected


def test_the_warning_names_the_scan_the_model_and_what_is_wrong():
    card = resolve_card("l2gnet-ct")[0]
    assert modality_warning(card, "CT", "abdomen.nii.gz") is None
    text = modality_warning(card, "unknown", "bscan.png")
    assert "bscan.png has no Hounsfield units" in text and "'l2gnet-ct' was trained on CT" in text
    assert "looks like OCT" in modality_warning(card, "OCT", "eye.vol")


def test_the_preferred_model_is_the_modality_default_or_else_one_that_suits():
    modality_of = {"a-ct": "CT", "b-oct": "OCT", "lightreseg-oct": "OCT"}
    assert preferred_model(list(modality_of), modality_of, "OCT") == "lightreseg-oct"
    assert preferred_model(["a-ct", "b-oct"], modality_of, "unknown") == "b-oct"
    assert preferred_model(["a-ct"], modality_of, "OCT") is None  # nothing rather than the wrong model


def test_choosing_models_imports_no_torch():
    code = (
        "import sys, reseg.zoo.catalogue as c; c.resolve_card('lightreseg-oct'); c.list_models(); "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    "error",
    [
        InputError("scan.tif", "is empty"),
        ExportClash("out", "holds another export"),
        CheckpointError("m.pt", "corrupt"),
        DeviceMemoryError("cuda:0"),
    ],
)
def test_errors_cross_process_boundaries_whole(error):
    """Models run in a separate process; its errors reach the user as the same error, with their fields."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and str(back) == str(error) and vars(back) == vars(error)
