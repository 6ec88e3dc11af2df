"""`reseg segment` of a cohort: labels and a summary per scan, resumable, a broken scan recorded, shared by ranks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from reseg.cli import main
from reseg.data.phantom import make_oct_phantom
from reseg.errors import InputError, ResegError
from reseg.inference.cohort import Cohort, Shard, cohort_scans, label_counts
from reseg.inference.segmentation import segment
from reseg.io import read_volume
from reseg.zoo.weights import load_model

SPACING_MM = (0.12, 0.0039, 0.0113)  # B-scan distance, axial, lateral: a Spectralis-like raster


def _write_scans(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for index in range(count):
        phantom = make_oct_phantom(n_bscans=2, height=224, width=160, seed=20 + index)
        path = folder / f"eye{index}.tif"
        z, y, x = SPACING_MM
        tifffile.imwrite(
            path, phantom.image, imagej=True, resolution=(1 / x, 1 / y), metadata={"spacing": z, "unit": "mm"}
        )
        paths.append(path)
    return paths


def _summary(folder: Path) -> list[dict[str, str]]:
    with open(folder / "summary.csv", newline="", encoding="utf-8") as table:
        return list(csv.DictReader(table))


@pytest.fixture(scope="module")
def oct_model():
    return load_model("lightreseg-oct", device="cpu")


@pytest.mark.slow
def test_a_cohort_is_segmented_summarised_and_resumed_after_a_kill(tmp_path, oct_model, capsys):
    scans = _write_scans(tmp_path / "scans", 3)
    (tmp_path / "scans" / "broken.tif").write_bytes(b"II*\x00garbage")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "scans"), "-o", str(out), "--device", "cpu"]) == 1  # one failed
    assert "broken.tif: is a TIFF without any image" in capsys.readouterr().err
    rows = {Path(row["input"]).name: row for row in _summary(out)}
    assert [rows[name]["status"] for name in ("broken.tif", "eye0.tif", "eye1.tif", "eye2.tif")] == [
        "failed",
        "segmented",
        "segmented",
        "segmented",
    ]
    assert "damaged or cut short" in rows["broken.tif"]["error"]
    assert json.loads((out / "summary.json").read_text())["scans"][0]["status"] == "failed"

    # the labels are those of the engine on the scan, and the volumes and thickness are theirs
    labels = tifffile.imread(out / "eye1_labels.tif")
    expected = segment(oct_model, read_volume(scans[1]).data, pixel_spacing=SPACING_MM[1:]).labels
    np.testing.assert_array_equal(labels, expected)
    row = rows["eye1.tif"]
    assert row["model"] == "lightreseg-oct" and row["device"] == "cpu" and row["slices"] == "2"
    assert row["weights_sha256"] == oct_model.card.weights_sha256
    voxel_mm3 = float(np.prod(SPACING_MM))
    fluid = oct_model.card.classes[-1]
    assert float(row[f"{fluid.name}_mm3"]) == pytest.approx(np.sum(labels == fluid.index) * voxel_mm3, abs=1e-3)
    assert 200 < float(row["total retina_um"]) < 600  # the phantom's retina, measured as `reseg measure` does

    # a kill: eye1's labels never landed, eye2's record was not written yet; the rest is kept
    (out / "eye1_labels.tif").unlink()
    (out / "eye2_labels.json").unlink()
    first_eye0 = (out / "eye0_labels.tif").stat().st_mtime_ns
    assert main(["segment", *map(str, scans), str(tmp_path / "scans" / "broken.tif"), "-o", str(out)]) == 1
    again = {Path(row["input"]).name: row["status"] for row in _summary(out)}
    assert again == {
        "eye0.tif": "already done",
        "eye1.tif": "segmented",
        "eye2.tif": "segmented",
        "broken.tif": "failed",
    }
    assert (out / "eye0_labels.tif").stat().st_mtime_ns == first_eye0
    np.testing.assert_array_equal(tifffile.imread(out / "eye1_labels.tif"), labels)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_inputs_are_expanded_and_checked_before_any_work(tmp_path, capsys):
    scans = _write_scans(tmp_path / "scans", 3)
    out = tmp_path / "scans" / "out"  # inside the input folder: never taken for a scan
    out.mkdir()
    tifffile.imwrite(out / "eye0_labels.tif", np.zeros((2, 8, 8), np.uint8))
    assert cohort_scans([str(tmp_path / "scans")], out) == scans
    assert cohort_scans([str(tmp_path / "scans" / "eye*.tif"), str(scans[0])], out) == scans  # a quoted glob
    with pytest.raises(InputError, match=r"nothing\.tif: no such file or folder"):
        cohort_scans([str(scans[0]), str(tmp_path / "nothing.tif")], out)
    with pytest.raises(InputError, match=r"x\*.tif: matches no file or folder"):
        cohort_scans([str(tmp_path / "x*.tif")], out)
    (tmp_path / "other").mkdir()
    tifffile.imwrite(tmp_path / "other" / "eye0.tif", np.zeros((2, 8, 8), np.uint8))
    assert main(["segment", str(scans[0]), str(tmp_path / "other" / "eye0.tif"), "-o", str(tmp_path / "o")]) == 1
    assert "would write eye0_labels.tif" in capsys.readouterr().err
    assert main(["segment", str(scans[0]), str(scans[1]), "-o", str(scans[2])]) == 1
    assert "eye2.tif: names a file; with several scans" in capsys.readouterr().err
    assert main(["segment", str(scans[0]), str(scans[1]), "-o", str(out), "--confidence", "c.tif"]) == 1
    assert "for one scan (-o FILE)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_ranks_take_every_other_scan_and_rank_0_gives_up_waiting_clearly(tmp_path, oct_model, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert Shard.from_environment() == Shard(1, 3, 0)
    assert Shard(1, 3).take([Path(str(i)) for i in range(7)]) == [Path("1"), Path("4")]
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ResegError, match="RANK 3 is not one of the WORLD_SIZE 3"):
        Shard.from_environment()
    cohort = Cohort.of(oct_model, [tmp_path / "a.tif", tmp_path / "b.tif"], tmp_path, Shard(0, 2))
    with pytest.raises(ResegError, match=r"waited 0.2 s for the summaries of rank\(s\) 1 \(.summary-rank1-of-2"):
        cohort.finish([], wait_seconds=0.2)
    assert not (tmp_path / "summary.csv").exists()


def test_class_counts_are_taken_slice_by_slice():
    labels = np.random.default_rng(0).integers(0, 5, (3, 7, 9)).astype(np.uint8)
    np.testing.assert_array_equal(label_counts(labels, 6), np.bincount(labels.ravel(), minlength=6))


@pytest.mark.slow
def test_two_ranks_under_torchrun_share_a_cohort_and_rank_0_merges_one_summary(tmp_path):
    """The command a cluster user runs, here with two CPU processes: each segments its half, and the summary
    lists every scan once."""
    scans = _write_scans(tmp_path / "scans", 4)
    out = tmp_path / "out"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run(
        [*torchrun, "-m", "reseg.cli", "segment", str(tmp_path / "scans"), "-o", str(out), "--device", "cpu"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "4 scan(s) (rank 0 of 2): 4 segmented; summary in" in done.stdout
    assert "2 scan(s) (rank 1 of 2): 2 segmented; rank 0 writes the summary" in done.stdout
    rows = _summary(out)
    assert sorted(row["input"] for row in rows) == sorted(map(str, scans))
    assert all(row["status"] == "segmented" for row in rows)
    assert sorted(p.name for p in out.glob("*_labels.tif")) == [f"eye{i}_labels.tif" for i in range(4)]
    assert not list(out.glob(".summary-rank*"))  # the partial summary is merged and removed
