"""`reseg measure` as a researcher runs it: a scan and its labels in, a thickness table out, per B-scan with the
model and review status, and on the ETDRS grid for a volume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from reseg.classes import OCT_CLASSES
from reseg.cli import main
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.io import Volume, read_volume, write_image, write_labels
from reseg.measurement.thickness import TOTAL_RETINA, layer_thickness
from reseg.review.session import save_session, start_session


@pytest.fixture(scope="module")
def macula(tmp_path_factory):
    """A phantom macular volume on disk (6.25 x 6.4 mm, spacing recorded) with its exact labels."""
    folder = tmp_path_factory.mktemp("macula")
    phantom = make_oct_phantom(n_bscans=25, height=320, width=256, seed=11, spacing=(0.25, 0.00387, 0.025))
    scan = write_image(folder / "macula.tif", Volume(phantom.image, phantom.spacing, "OCT", folder / "macula.tif"))
    like = read_volume(scan)
    labels = write_labels(folder / "macula_labels.tif", phantom.labels, like, OCT_CLASSES)
    return phantom, scan, labels


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_volume_gets_its_b_scans_and_the_etdrs_grid_with_the_true_thickness(macula, tmp_path):
    phantom, scan, labels = macula
    output = tmp_path / "thickness.csv"
    assert main(["measure", str(scan), str(labels), "-o", str(output)]) == 0
    rows = _rows(output)
    truth = layer_thickness(phantom.surfaces, phantom.spacing[1])[TOTAL_RETINA]
    totals = [row for row in rows if row["region"] == "bscan" and row["layer"] == TOTAL_RETINA]
    assert [int(row["bscan"]) for row in totals] == list(range(25))
    for row in totals:
        assert float(row["mean_um"]) == pytest.approx(float(np.mean(truth[int(row["bscan"])])), abs=4.0)
        assert row["review_status"] == "unreviewed" and row["a_scans"] == "256"
    etdrs = {
        row["sector"]: float(row["mean_um"])
        for row in rows
        if row["region"] == "etdrs" and row["layer"] == TOTAL_RETINA
    }
    assert len(etdrs) == 9 and etdrs["central"] < etdrs["inner superior"]  # the foveal pit


def test_json_holds_the_fovea_and_a_session_gives_the_model_and_what_the_grader_reviewed(macula, tmp_path):
    phantom, scan, _ = macula
    session = start_session(read_volume(scan), phantom.labels, list(OCT_CLASSES), model_name="lightreseg-oct")
    session.review.mark(3, "reviewed")
    path = save_session(tmp_path / f"{scan.name}.reseg-session.npz", session)
    output = tmp_path / "thickness.json"
    assert main(["measure", str(scan), str(path), "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["bscans"][3]["review_status"] == "reviewed" and report["bscans"][4]["review_status"] == "unreviewed"
    assert {b["model"] for b in report["bscans"]} == {"lightreseg-oct"}
    y, x = report["fovea_mm"]
    assert abs(y - phantom.fovea[0] * 0.25) <= 0.25 and abs(x - phantom.fovea[1] * 0.025) < 0.1
    assert set(report["etdrs_um"]) == set(report["layers"]) and report["laterality"] is None


def test_a_real_line_scan_is_measured_per_b_scan_only(shared_data, tmp_path):
    scan = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    labels = tmp_path / "labels.tif"
    assert main(["segment", str(scan), "-o", str(labels), "--device", "cpu"]) == 0
    output = tmp_path / "line.json"
    assert main(["measure", str(scan), str(labels), "-o", str(output)]) == 0
    report = json.loads(output.read_text())
    assert report["etdrs_um"] == {} and report["fovea_mm"] is None and report["laterality"] == "OD"
    [bscan] = report["bscans"]
    assert 200 < bscan["mean_um"][TOTAL_RETINA] < 400  # a healthy macula's retina, in um
    device = read_volume(scan).metadata["boundaries"]
    device_um = np.nanmean(device["BM"] - device["ILM"]) * read_volume(scan).spacing[1] * 1000
    # the device's own thickness, less the 12 um by which the model's BM lies above the device's (its card)
    assert bscan["mean_um"][TOTAL_RETINA] == pytest.approx(device_um, abs=30)


def test_a_real_circle_scan_gets_its_tsnit_figures(shared_data, tmp_path):
    """The peripapillary circle scan: per-B-scan figures and, along the circle, the average, quadrant and
    sector means of each layer, as the Thickness widget shows them."""
    from reseg.measurement.tsnit import tsnit_profile

    scan = shared_data("spectralis_vol", "Willis_B_716_2.vol")
    labels = tmp_path / "labels.tif"
    assert main(["segment", str(scan), "-o", str(labels), "--device", "cpu"]) == 0
    output = tmp_path / "circle.csv"
    assert main(["measure", str(scan), str(labels), "-o", str(output)]) == 0
    rnfl = {
        row["sector"]: float(row["mean_um"])
        for row in _rows(output)
        if row["region"] == "tsnit" and row["layer"] == "RNFL"
    }
    assert list(rnfl) == [
        "average",
        "temporal",
        "superior",
        "nasal",
        "inferior",
        "superotemporal",
        "superonasal",
        "inferonasal",
        "inferotemporal",
    ]
    volume = read_volume(scan)
    thickness = layer_thickness(boundary_rows(read_volume(labels).data), volume.spacing[1])["RNFL"][0]
    expected = tsnit_profile(thickness, volume.metadata["bscan_positions"][0], "OD").figures()
    assert rnfl == pytest.approx(expected, abs=0.006)  # the CSV's two decimals
    assert 40 < rnfl["average"] < 160  # um: an adult's peripapillary RNFL


def test_what_cannot_be_measured_is_refused_naming_the_file(macula, tmp_path, capsys):
    phantom, scan, labels = macula
    no_spacing = tmp_path / "bare.tif"
    tifffile.imwrite(no_spacing, phantom.image)  # a TIFF from elsewhere: no pixel size
    bare_labels = write_labels(tmp_path / "bare_labels.tif", phantom.labels, read_volume(no_spacing), OCT_CLASSES)
    assert main(["measure", str(no_spacing), str(bare_labels), "-o", str(tmp_path / "a.csv")]) == 1
    assert "bare.tif" in capsys.readouterr().err
    plain = write_image(tmp_path / "plain.tif", read_volume(labels))  # numbers without classes
    assert main(["measure", str(scan), str(plain), "-o", str(tmp_path / "b.csv")]) == 1
    assert "plain.tif: holds no OCT layer labels" in capsys.readouterr().err
    assert main(["measure", str(scan), str(labels), "-o", str(tmp_path / "c.xlsx")]) == 1
    assert "c.xlsx" in capsys.readouterr().err
