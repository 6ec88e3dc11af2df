"""The `reseg` command line as a user runs it: outputs with the input's geometry, clear one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from reseg.cli import main
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.io import read_volume


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reseg.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def oct_stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oct")
    phantom = make_oct_phantom(n_bscans=2, height=224, width=160, seed=5)
    path = folder / "scan.tif"
    tifffile.imwrite(path, phantom.image, imagej=True)
    return path


def test_models_lists_the_bundled_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "lightreseg-oct" in out and "l2gnet-ct" in out and "bundled" in out


@pytest.mark.slow
def test_segment_tiff_stack_with_confidence(oct_stack, tmp_path):
    out, confidence = tmp_path / "labels.tif", tmp_path / "confidence.tif"
    result = run("segment", str(oct_stack), "-o", str(out), "--confidence", str(confidence), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    labels = tifffile.imread(out)
    assert labels.shape == (2, 224, 160) and labels.dtype == np.uint8 and labels.max() <= 9
    assert tifffile.imread(confidence).shape == labels.shape
    assert "lightreseg-oct on cpu" in result.stdout


@pytest.mark.slow
def test_the_onnx_and_the_torch_backend_give_the_same_labels(oct_stack, tmp_path):
    pytest.importorskip("onnxruntime")
    written = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.tif"
        result = run("segment", str(oct_stack), "-o", str(out), "--backend", backend, "--device", "cpu")
        assert result.returncode == 0, result.stderr
        written[backend] = tifffile.imread(out)
    assert (written["torch"] == written["onnx"]).mean() >= 0.9999
    refused = run("segment", str(oct_stack), "-o", str(tmp_path / "x.tif"), "--backend", "tensorrt")
    assert refused.returncode == 2 and "tensorrt" in refused.stderr


def test_segment_single_png_writes_a_2d_label_image(tmp_path):
    image = make_oct_phantom(n_bscans=1, height=224, width=160, seed=3).image[0]
    Image.fromarray(image).save(tmp_path / "bscan.png")
    assert main(["segment", str(tmp_path / "bscan.png"), "-o", str(tmp_path / "bscan_labels.tif")]) == 0
    assert tifffile.imread(tmp_path / "bscan_labels.tif").shape == (224, 160)


def test_segment_folder_of_slices(tmp_path):
    folder = tmp_path / "slices"
    folder.mkdir()
    for index, bscan in enumerate(make_oct_phantom(n_bscans=3, height=224, width=128, seed=4).image):
        Image.fromarray(bscan).save(folder / f"bscan{index}.png")
    assert main(["segment", str(folder), "-o", str(tmp_path / "labels.nii.gz"), "--batch-size", "2"]) == 0
    assert nib.load(tmp_path / "labels.nii.gz").shape == (128, 224, 3)


def test_segment_nifti_keeps_the_affine(tmp_path):
    affine = np.array([[-0.8, 0, 0, 120.0], [0, 0.8, 0, -40.0], [0, 0, 2.5, 300.0], [0, 0, 0, 1]])
    hu = np.random.default_rng(0).integers(-1000, 400, (64, 48, 3)).astype(np.int16)
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "ct.nii.gz")
    assert main(["segment", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "organs.nii.gz")]) == 0
    written = nib.load(tmp_path / "organs.nii.gz")
    assert written.shape == hu.shape
    np.testing.assert_allclose(written.affine, affine)


def _bad_inputs(tmp_path):
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    tifffile.imwrite(tmp_path / "nan.tif", np.full((2, 16, 16), np.nan, dtype=np.float32))
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00garbage")
    tifffile.imwrite(
        tmp_path / "fourd.tif", np.zeros((2, 2, 2, 8, 8), dtype=np.uint8), imagej=False, photometric="minisblack"
    )
    return {
        "missing.tif": "missing.tif",
        "colour.png": "colour.png",
        "nan.tif": "nan.tif",
        "corrupt.tif": "corrupt.tif",
        "fourd.tif": "fourd.tif",
    }


def test_bad_input_exits_nonzero_with_one_line_and_writes_nothing(tmp_path):
    for name, mentioned in _bad_inputs(tmp_path).items():
        out = tmp_path / f"{name}.labels.tif"
        result = run("segment", str(tmp_path / name), "-o", str(out))
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("reseg: error:") and mentioned in lines[0], (name, lines)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_output_or_model_is_refused_before_any_work(oct_stack, tmp_path, capsys):
    assert main(["segment", str(oct_stack), "-o", str(tmp_path / "labels.png")]) == 1
    assert "labels.png: output must end in .tif" in capsys.readouterr().err
    assert main(["segment", str(oct_stack), "-o", str(tmp_path / "labels.tif"), "--model", "nope"]) == 1
    assert "nope: no such model or file" in capsys.readouterr().err
    assert not (tmp_path / "labels.tif").exists()


def test_a_phantom_that_cannot_be_made_leaves_no_folder(tmp_path):
    """The retina's thickness is drawn per seed, so a size can fail on a later volume: nothing half-written
    may remain, or the next try would be refused for a non-empty folder."""
    result = run("phantom", str(tmp_path / "sample"), "--volumes", "3", "--height", "90")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "height=90" in lines[0] and "use a larger height" in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_a_model_for_another_modality_is_run_only_with_a_warning(tmp_path, capsys):
    """The CT model on an OCT B-scan saved as PNG (grey levels, no Hounsfield units): labels 'liver' without
    a word of warning before; now the command says what is wrong before it runs."""
    image = make_oct_phantom(n_bscans=1, height=224, width=160, seed=3).image[0]
    Image.fromarray(image).save(tmp_path / "bscan.png")
    assert main(["segment", str(tmp_path / "bscan.png"), "-o", str(tmp_path / "ct.tif"), "--model", "l2gnet-ct"]) == 0
    err = capsys.readouterr().err
    assert "warning: bscan.png has no Hounsfield units" in err and "trained on CT" in err
    assert main(["segment", str(tmp_path / "bscan.png"), "-o", str(tmp_path / "oct.tif")]) == 0
    assert "warning" not in capsys.readouterr().err  # the default model for a grey image is the OCT one


def test_segment_writes_the_fitted_boundaries_of_a_real_scan_as_csv_and_json(shared_data, tmp_path):
    scan = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    labels, table, document = tmp_path / "labels.tif", tmp_path / "boundaries.csv", tmp_path / "boundaries.json"
    assert main(["segment", str(scan), "-o", str(labels), "--boundaries", str(table), "--device", "cpu"]) == 0
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 768 and rows[0]["bscan"] == "0" and rows[-1]["a_scan"] == "767"
    ilm = np.array([float(row["ILM_px"]) for row in rows])
    bm = np.array([float(row["BM_px"]) for row in rows])
    assert np.all(bm >= ilm) and np.mean(bm > ilm) > 0.98  # ordered; a retina in all but a few disc-edge A-scans
    assert float(rows[0]["ILM_um"]) == pytest.approx(ilm[0] * 3.87, rel=0.01)
    device = read_volume(scan).metadata["boundaries"]
    known = np.isfinite(device["ILM"][0])
    assert np.abs(ilm - device["ILM"][0])[known].mean() < 2.0  # within 2 px of the device's own ILM
    written = boundary_rows(read_volume(labels).data)
    np.testing.assert_array_equal(written[0, 0], ilm)  # the labels file and the table tell the same boundaries

    assert main(["segment", str(scan), "-o", str(labels), "--boundaries", str(document), "--device", "cpu"]) == 0
    saved = json.loads(document.read_text())
    assert saved["boundaries"][0] == "ILM" and saved["shape"] == [1, 768] and saved["model"] == "lightreseg-oct"
    assert saved["heights"]["ILM"][0] == ilm.astype(int).tolist() and saved["from"] == "layer_surfaces"


def test_a_sessions_corrected_boundaries_leave_with_each_b_scans_review_status(oct_stack, tmp_path, capsys):
    from reseg.classes import OCT_CLASSES
    from reseg.review.session import save_session, start_session

    volume = read_volume(oct_stack)
    phantom = make_oct_phantom(n_bscans=3, height=224, width=192, seed=7)  # the stack's own labels
    session = start_session(volume, phantom.labels, list(OCT_CLASSES), model_name="lightreseg-oct")
    session.labels[1, :, :40][session.labels[1, :, :40] == 1] = 0  # the grader moves the ILM down in B-scan 1
    session.review.mark(1, "reviewed")
    path = save_session(tmp_path / "scan.reseg-session.npz", session)
    table = tmp_path / "corrected.csv"
    assert main(["export", str(path), "--format", "boundaries", "-o", str(table)]) == 0
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 192 and rows[0]["review_status"] == "unreviewed"
    original = boundary_rows(phantom.labels)
    assert (original[1, 1, :40] > original[0, 1, :40]).all()  # there was an RNFL to take away
    for row in rows[192:232]:  # B-scan 1, the corrected stretch: its ILM is where the RNFL ended
        assert row["bscan"] == "1" and row["review_status"] == "reviewed"
        assert float(row["ILM_px"]) == original[1, 1, int(row["a_scan"])]
    assert float(rows[192 + 100]["ILM_px"]) == original[0, 1, 100]  # beyond it, untouched
    document = tmp_path / "corrected.json"
    assert main(["export", str(path), "--format", "boundaries", "-o", str(document)]) == 0
    saved = json.loads(document.read_text())
    assert saved["review_status"] == ["unreviewed", "reviewed", "unreviewed"] and saved["model"] == "lightreseg-oct"
    assert saved["axial_spacing_mm"] is None  # the stack records no spacing: its 1.0 mm placeholder is not given
    assert main(["export", str(path), "--format", "boundaries", "-o", str(table), "--include-unreviewed"]) == 1
    assert "takes only -o" in capsys.readouterr().err


def test_a_vol_files_device_boundaries_leave_the_same_way(shared_data, oct_stack, tmp_path, capsys):
    scan = shared_data("spectralis_vol", "Willis_B_716_2.vol")
    document = tmp_path / "device.json"
    assert main(["export", str(scan), "--format", "boundaries", "-o", str(document)]) == 0
    saved = json.loads(document.read_text())
    assert saved["boundaries"] == ["ILM", "RNFL-GCL", "BM"] and saved["shape"] == [1, 768]
    device = read_volume(scan).metadata["boundaries"]
    np.testing.assert_allclose(np.array(saved["heights"]["RNFL-GCL"], float), device["RNFL"], atol=1e-3)
    assert main(["export", str(oct_stack), "--format", "boundaries", "-o", str(document)]) == 1
    assert f"{oct_stack.name}: is neither a review session nor a scan with device layer boundaries" in (
        capsys.readouterr().err
    )


def test_boundaries_are_refused_before_any_work_for_a_wrong_file_or_a_ct_model(oct_stack, tmp_path, capsys):
    labels = tmp_path / "labels.tif"
    assert main(["segment", str(oct_stack), "-o", str(labels), "--boundaries", str(tmp_path / "b.txt")]) == 1
    assert "b.txt: boundaries output must end in .csv, .json" in capsys.readouterr().err
    arguments = ["segment", str(oct_stack), "-o", str(labels), "--boundaries", str(tmp_path / "b.csv")]
    assert main([*arguments, "--model", "l2gnet-ct"]) == 1
    assert "b.csv: holds OCT layer boundaries; l2gnet-ct is a CT model" in capsys.readouterr().err
    assert not labels.exists()
