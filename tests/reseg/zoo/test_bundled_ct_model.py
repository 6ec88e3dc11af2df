"""The bundled `l2gnet-ct` on the labelled CT scan it never trained on: the card's figures are what
`reseg evaluate` measures today (the real scans need ../shared/data)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from reseg.cli import main
from reseg.data.dataset import write_training_set
from reseg.zoo.catalogue import resolve_card

PREPARE = Path(__file__).resolve().parents[3] / "training" / "prepare_ct_totalseg.py"


def test_validation_scan_dice_and_misplaced_organs_are_as_on_the_card(shared_data, tmp_path):
    spec = importlib.util.spec_from_file_location("prepare_ct_totalseg", PREPARE)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    source = shared_data("ct_totalseg")
    lookup = prepare.synapse_lookup(json.loads((source / "class_map_total.json").read_text())["total"])
    scan = prepare.organ_scan(source / "example_ct_dicom", source / "example_seg_dicom.nii.gz", lookup, 3.0)
    write_training_set(tmp_path / "validation", [("example_ct_dicom", *scan)], "CT", prepare.SOURCE_NOTE)
    output = tmp_path / "report.json"
    assert main(["evaluate", "l2gnet-ct", str(tmp_path / "validation"), "-o", str(output), "--device", "cpu"]) == 0
    report = json.loads(output.read_text())
    card = resolve_card("l2gnet-ct")[0].metrics["validation_scan"]
    assert report["mean_dice"] == pytest.approx(card["mean_dice"], abs=0.005)
    for organ in ("aorta", "liver", "spleen", "stomach"):  # the organs this scan holds in quantity
        assert report["per_class"][organ]["dice"] == pytest.approx(card["per_class"][organ]["dice"], abs=0.01)
    assert report["misplaced_organs"] == card["misplaced_organs"]
    assert all(entry["pixels_outside_body"] == 0 for entry in report["misplaced_organs"].values())
