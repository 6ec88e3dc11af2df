"""Export for retraining: our training-set format and nnU-Net v2's, read back pixel for pixel and field by field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from reseg.classes import CT_CLASSES, IGNORE_INDEX, OCT_BOUNDARIES, OCT_CLASSES
from reseg.cli import main
from reseg.data.ct_phantom import make_ct_phantom
from reseg.data.dataset import load_training_set
from reseg.data.phantom import make_oct_phantom
from reseg.errors import InputError
from reseg.evaluation.evaluate import boundary_rows, device_boundaries
from reseg.io import Volume, read_volume, write_image
from reseg.review.edits import slice_edit_statistics
from reseg.review.export import export_nnunet, export_training_set
from reseg.review.session import Session, save_session, start_session

SHAPE = {"n_bscans": 4, "height": 224, "width": 128}


def _scan(path: Path, seed: int) -> Path:
    phantom = make_oct_phantom(**SHAPE, seed=seed)
    return write_image(path, Volume(phantom.image, phantom.spacing, "OCT", metadata={"spacing_known": (True,) * 3}))


def _session(scan: Path, seed: int) -> Session:
    """Slices 0 and 2 reviewed (0 unchanged, 2 corrected), 1 unreviewed, 3 skipped."""
    volume = dataclasses.replace(read_volume(scan), modality="OCT")
    prediction = make_oct_phantom(**SHAPE, seed=seed).labels
    session = start_session(volume, prediction, list(OCT_CLASSES), "lightreseg-oct", "cd" * 32, reviewer="grader")
    session.labels[2, 60:80, 20:60] = 9
    session.review.mark(0, "reviewed")
    session.review.mark(2, "reviewed")
    session.review.mark(3, "skipped")
    return session


@pytest.fixture
def session(tmp_path) -> Session:
    return _session(_scan(tmp_path / "scans" / "eye.tif", seed=1), seed=1)


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text())


def test_export_reads_back_with_identical_pixels_and_provenance(session, tmp_path):
    out = tmp_path / "export"
    result = export_training_set(session, out)
    assert result.added == [0, 2] and result.updated == [] and result.total == 2
    image = read_volume(session.source).data
    manifest = _manifest(out)
    assert manifest["format"] == "reseg-dataset" and manifest["version"] == 1 and manifest["modality"] == "OCT"
    assert manifest["ignore_index"] == IGNORE_INDEX
    assert manifest["classes"] == [c.to_dict() for c in OCT_CLASSES]
    assert [item["slice"] for item in manifest["items"]] == [0, 2]
    for item in manifest["items"]:
        index = item["slice"]
        assert item["image"] == f"images/eye_s{index:04d}.tif" and item["label"] == f"labels/eye_s{index:04d}.tif"
        exported_image, exported_labels = read_volume(out / item["image"]), read_volume(out / item["label"])
        assert np.array_equal(exported_image.data[0], image[index])
        assert np.array_equal(exported_labels.data[0], session.labels[index])
        assert exported_labels.spacing == pytest.approx(session.spacing)
        review = session.review.slices[index]
        assert item["source"] == str(session.source) and item["source_sha256"] == session.source_sha256
        assert item["status"] == "reviewed" and item["reviewer"] == "grader" == review.reviewer
        assert item["reviewed_at"] == review.timestamp and item["exported_at"]
        assert item["spacing"] == pytest.approx(list(session.spacing))
        assert item["model"] == {"name": "lightreseg-oct", "weights_sha256": "cd" * 32}
        statistics = slice_edit_statistics(session.prediction[index], session.labels[index], 10)
        assert item["edit_statistics"] == json.loads(json.dumps(statistics))
    assert manifest["items"][0]["edit_statistics"]["pixels_changed"] == 0
    assert manifest["items"][1]["edit_statistics"]["pixels_changed"] > 0

    training_set = load_training_set([out])
    assert len(training_set.scans) == 1  # the slices of one scan stay one scan for train/validation splits
    assert np.array_equal(training_set.scans[0].labels, session.labels[[0, 2]])
    assert [c.name for c in training_set.classes] == [c.name for c in OCT_CLASSES]


def test_unreviewed_slices_go_out_only_when_asked_and_then_ignored(session, tmp_path):
    result = export_training_set(session, tmp_path / "export", include_unreviewed=True)
    assert result.added == [0, 1, 2]  # never the skipped slice 3
    item = _manifest(tmp_path / "export")["items"][1]
    assert item["slice"] == 1 and item["status"] == "unreviewed" and item["reviewer"] is None
    assert item["edit_statistics"] is None
    assert (read_volume(tmp_path / "export" / item["label"]).data == IGNORE_INDEX).all()
    training_set = load_training_set([tmp_path / "export"])
    assert training_set.ignore_index == IGNORE_INDEX and (training_set.scans[0].labels[1] == IGNORE_INDEX).all()


def test_a_second_export_adds_and_updates_without_duplicating(session, tmp_path):
    out = tmp_path / "export"
    export_training_set(session, out)
    session.labels[0, :5] = 4
    session.review.mark(0, "reviewed", reviewer="second grader")
    session.review.mark(1, "reviewed")
    result = export_training_set(session, out)
    assert result.added == [1] and result.updated == [0, 2] and result.total == 3
    items = _manifest(out)["items"]
    assert [item["slice"] for item in items] == [0, 1, 2] and items[0]["reviewer"] == "second grader"
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["eye_s0000.tif", "eye_s0001.tif", "eye_s0002.tif"]
    assert np.array_equal(read_volume(out / items[0]["label"]).data[0], session.labels[0])

    other = _session(_scan(tmp_path / "scans" / "fellow_eye.tif", seed=2), seed=2)
    assert export_training_set(other, out).total == 5
    assert [s.name for s in load_training_set([out]).scans] == ["export/eye", "export/fellow_eye"]


def test_an_existing_different_export_is_not_overwritten_without_asking(session, tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "images").mkdir(parents=True)
    (foreign / "images" / "mine.png").write_bytes(b"someone's image")
    with pytest.raises(InputError, match="holds no reseg training set"):
        export_training_set(session, foreign)
    assert [p.name for p in foreign.rglob("*")] == ["images", "mine.png"]  # untouched
    export_training_set(session, foreign, overwrite=True)
    assert sorted(p.name for p in (foreign / "images").iterdir()) == ["eye_s0000.tif", "eye_s0002.tif"]

    out = tmp_path / "export"
    export_training_set(session, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    namesake = _session(_scan(tmp_path / "other" / "eye.tif", seed=5), seed=5)  # same name, other scan
    with pytest.raises(InputError, match=r"eye_s0000.tif: already holds slice 0 of .*scans/eye.tif"):
        export_training_set(namesake, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written
    renamed = [*OCT_CLASSES[:9], dataclasses.replace(OCT_CLASSES[9], name="fluid")]
    with pytest.raises(InputError, match="other classes"):
        export_training_set(dataclasses.replace(session, classes=renamed), out)

    result = export_training_set(namesake, out, overwrite=True)
    assert result.added == [0, 2] and result.total == 2
    assert {item["source_sha256"] for item in _manifest(out)["items"]} == {namesake.source_sha256}


def _listed_and_on_disk(folder: Path, items: list[dict]) -> tuple[set[str], set[str]]:
    """The files dataset.json lists (images, labels, boundaries) and those the folder holds besides it."""
    listed = {item[key] for item in items for key in ("image", "label", "boundaries") if key in item}
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {"dataset.json"}
    return listed, on_disk


def _heights(document: dict) -> np.ndarray:
    """(8, 1, W) rows of a boundaries file, NaN where it says null."""
    return np.array([document["heights"][name] for name in OCT_BOUNDARIES], dtype=float)  # None -> NaN


def test_an_oct_export_writes_each_bscans_boundary_heights_with_its_status(session, tmp_path):
    out = tmp_path / "export"
    export_training_set(session, out, include_unreviewed=True)
    items = _manifest(out)["items"]
    assert [item["boundaries"] for item in items] == [f"boundaries/eye_s{i:04d}.json" for i in (0, 1, 2)]
    truth = make_oct_phantom(**SHAPE, seed=1)  # slice 0 went out as predicted: the phantom's true labels
    for item in items:
        document = json.loads((out / item["boundaries"]).read_text())
        assert document["boundaries"] == list(OCT_BOUNDARIES) and document["shape"] == [1, SHAPE["width"]]
        assert document["review_status"] == [item["status"]] == [session.review.slices[item["slice"]].status.value]
        assert document["axial_spacing_mm"] == pytest.approx(session.spacing[1])
        assert {k: document[k] for k in ("slice", "source_sha256", "image", "label")} == {
            k: item[k] for k in ("slice", "source_sha256", "image", "label")
        }
        exported_labels = read_volume(out / item["label"]).data[0]
        np.testing.assert_array_equal(_heights(document), boundary_rows(exported_labels))
    first = _heights(json.loads((out / items[0]["boundaries"]).read_text()))[:, 0]
    assert np.abs(first - truth.surfaces[:, 0]).max() <= 0.5  # the phantom's true surfaces, to the pixel
    unreviewed = json.loads((out / items[1]["boundaries"]).read_text())
    assert unreviewed["review_status"] == ["unreviewed"] and np.isnan(_heights(unreviewed)).all()
    listed, on_disk = _listed_and_on_disk(out, items)
    assert listed == on_disk

    load_training_set([out])  # the manifest with boundaries still loads; one without them too (older exports)
    manifest = _manifest(out)
    for item in manifest["items"]:
        del item["boundaries"]
    (out / "dataset.json").write_text(json.dumps(manifest))
    assert load_training_set([out]).num_slices == 3


def test_a_scan_without_recorded_spacing_exports_null_axial_spacing(tmp_path):
    """The 1.0 mm a reader puts where the file records no spacing must not pass for the B-scan's pixel size."""
    phantom = make_oct_phantom(**SHAPE, seed=2)
    plain = tmp_path / "scans" / "plain.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, phantom.image, photometric="minisblack")  # no resolution, no spacing
    out = tmp_path / "export"
    export_training_set(_session(plain, seed=2), out)
    items = _manifest(out)["items"]
    documents = [json.loads((out / item["boundaries"]).read_text()) for item in items]
    assert len(documents) == 2 and all(document["axial_spacing_mm"] is None for document in documents)


def test_a_real_scans_accepted_device_boundaries_leave_at_their_heights(shared_data, tmp_path):
    """A Spectralis line scan whose grader accepted the device's ILM and BM (labels drawn from them): the
    exported heights are the device's, to the pixel row, null where the device has none, in the file's spacing."""
    scan = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    volume = read_volume(scan)
    device = device_boundaries(volume)
    ilm, bm = np.ceil(device["ILM"][0]), np.ceil(device["BM"][0])
    rows = np.arange(volume.data.shape[1])[:, None]
    labels = np.where(rows >= np.nan_to_num(ilm, nan=np.inf), 1, 0) + np.where(
        rows >= np.nan_to_num(bm, nan=np.inf), 7, 0
    )
    labels[:, np.isnan(ilm)] = 0  # no ILM: the grader left the A-scan vitreous
    session = start_session(volume, labels[None], list(OCT_CLASSES), "device")
    session.review.mark(0, "reviewed")
    export_training_set(session, tmp_path / "export")
    document = json.loads((tmp_path / "export" / "boundaries" / "Willis_B_716_0_s0000.json").read_text())
    heights = _heights(document)[:, 0]
    np.testing.assert_array_equal(heights[0], ilm)
    np.testing.assert_array_equal(heights[7], np.where(np.isnan(ilm), np.nan, bm))
    assert np.isnan(heights[0]).sum() == 9 and np.isnan(heights[7]).sum() >= 135  # the device's gaps stay gaps
    assert document["axial_spacing_mm"] == pytest.approx(0.00387, abs=1e-5)


def test_a_graders_correction_shows_in_the_reexported_heights_which_replace_the_old(session, tmp_path):
    out = tmp_path / "export"
    export_training_set(session, out)
    before = _heights(json.loads((out / "boundaries" / "eye_s0000.json").read_text()))
    ilm = before[0, 0].astype(int)
    moved = np.flatnonzero(before[1, 0] - before[0, 0] > 3)[:20]  # A-scans whose RNFL is thicker than 3 rows
    assert moved.size == 20
    for column in moved:  # the grader moves the ILM 2 rows down there
        session.labels[0, ilm[column] : ilm[column] + 2, column] = 0
    session.review.mark(0, "reviewed", reviewer="second grader")
    result = export_training_set(session, out)
    assert result.updated == [0, 2] and result.added == []
    items = _manifest(out)["items"]
    assert sorted(p.name for p in (out / "boundaries").iterdir()) == ["eye_s0000.json", "eye_s0002.json"]
    after = _heights(json.loads((out / items[0]["boundaries"]).read_text()))
    np.testing.assert_array_equal(after[0, 0, moved], before[0, 0, moved] + 2)
    np.testing.assert_array_equal(np.delete(after[0, 0], moved), np.delete(before[0, 0], moved))
    np.testing.assert_array_equal(after[1:], before[1:])  # the RNFL-GCL and the layers below stay
    listed, on_disk = _listed_and_on_disk(out, items)
    assert listed == on_disk


def test_an_older_export_without_boundaries_gets_them_on_reexport(session, tmp_path):
    out = tmp_path / "export"
    export_training_set(session, out)
    manifest = _manifest(out)  # as an export made before boundaries were written
    for item in manifest["items"]:
        del item["boundaries"]
    (out / "dataset.json").write_text(json.dumps(manifest))
    for file in (out / "boundaries").iterdir():
        file.unlink()
    session.review.mark(1, "reviewed")
    assert export_training_set(session, out).updated == [0, 2]
    items = _manifest(out)["items"]
    assert [item["boundaries"] for item in items] == [f"boundaries/eye_s{i:04d}.json" for i in (0, 1, 2)]
    listed, on_disk = _listed_and_on_disk(out, items)
    assert listed == on_disk


def test_a_ct_export_has_no_boundaries_and_its_overwrite_clears_an_oct_exports(session, tmp_path):
    phantom = make_ct_phantom(n_slices=3, size=64, seed=0)
    scan = write_image(tmp_path / "scans" / "abdomen.tif", Volume(phantom.image, phantom.spacing, "CT"))
    volume = dataclasses.replace(read_volume(scan), modality="CT")
    ct_session = start_session(volume, phantom.labels, list(CT_CLASSES), "l2gnet-ct")
    ct_session.review.mark(1, "reviewed")
    out = tmp_path / "export"
    export_training_set(session, out)
    assert (out / "boundaries").is_dir()
    with pytest.raises(InputError, match="holds a training set with other classes"):
        export_training_set(ct_session, out)
    export_training_set(ct_session, out, overwrite=True)
    items = _manifest(out)["items"]
    assert [item["slice"] for item in items] == [1] and "boundaries" not in items[0]
    listed, on_disk = _listed_and_on_disk(out, items)
    assert listed == on_disk  # the OCT export's boundaries went with its images and labels


def test_a_changed_scan_is_not_exported_with_stale_labels(session):
    changed = read_volume(session.source)
    changed.data[0, 0, 0] ^= 1
    write_image(session.source, changed)
    with pytest.raises(InputError, match="has changed since the session was started"):
        export_training_set(session, session.source.parent / "export")


def test_nnunet_export_reads_back_with_nibabel(session, tmp_path):
    result = export_nnunet(session, tmp_path / "nnUNet_raw", 501, "OCTLayers", include_unreviewed=True)
    folder = tmp_path / "nnUNet_raw" / "Dataset501_OCTLayers"
    assert result.folder == folder and result.added == [0, 1, 2]
    manifest = _manifest(folder)
    assert manifest["channel_names"] == {"0": "OCT"} and manifest["file_ending"] == ".nii.gz"
    assert manifest["labels"] == {**{c.name: c.index for c in OCT_CLASSES}, "ignore": 10}
    assert manifest["numTraining"] == 3 == len(list((folder / "labelsTr").iterdir()))
    image = read_volume(session.source).data
    _, y, x = session.spacing
    for item in manifest["reseg"]["items"]:
        index, case = item["slice"], f"eye_s{item['slice']:04d}"
        assert item["image"] == f"imagesTr/{case}_0000.nii.gz" and item["label"] == f"labelsTr/{case}.nii.gz"
        nifti_image, nifti_labels = nib.load(folder / item["image"]), nib.load(folder / item["label"])
        assert nifti_image.shape == nifti_labels.shape == (128, 224)  # 2-D, x then y
        for nifti in (nifti_image, nifti_labels):
            assert nifti.header.get_zooms() == pytest.approx((x, y))
        assert np.allclose(nifti_image.affine, nifti_labels.affine)
        assert np.array_equal(np.asanyarray(nifti_image.dataobj).T, image[index])
        expected = session.labels[index] if index != 1 else np.full_like(session.labels[index], IGNORE_INDEX)
        assert np.array_equal(np.asanyarray(nifti_labels.dataobj).T, np.where(expected == IGNORE_INDEX, 10, expected))

    boundaries = [item["boundaries"] for item in manifest["reseg"]["items"]]  # beside imagesTr/labelsTr
    assert boundaries == [f"boundaries/eye_s{i:04d}.json" for i in (0, 1, 2)]
    assert all((folder / name).is_file() for name in boundaries)
    assert export_nnunet(session, tmp_path / "nnUNet_raw", 501, "OCTLayers").updated == [0, 2]
    assert _manifest(folder)["numTraining"] == 3
    with pytest.raises(InputError, match="Dataset501_OCTLayers with dataset id 501"):
        export_nnunet(session, tmp_path / "nnUNet_raw", 501, "Other")


def test_cli_exports_a_session_and_trains_on_the_export(tmp_path, capsys):
    out, models = tmp_path / "export", tmp_path / "models"
    for name, seed in (("eye", 1), ("fellow_eye", 2)):
        session = _session(_scan(tmp_path / "scans" / f"{name}.tif", seed), seed)
        session_file = save_session(tmp_path / f"{name}.reseg-session.npz", session)
        assert main(["export", str(session_file), "-o", str(out)]) == 0
    assert "2 slice(s) added, 0 updated, 4 in the dataset" in capsys.readouterr().out

    assert main(["export", str(session_file), "-o", str(tmp_path / "raw"), "--format", "nnunet"]) == 1
    assert "--format nnunet needs --dataset-id" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                str(session_file),
                "-o",
                str(tmp_path / "raw"),
                "--format",
                "nnunet",
                "--dataset-id",
                "7",
                "--dataset-name",
                "Eyes",
            ]
        )
        == 0
    )
    assert (tmp_path / "raw" / "Dataset007_Eyes" / "dataset.json").is_file()
    (tmp_path / "broken.reseg-session.npz").write_bytes(b"\0" * 10)
    assert main(["export", str(tmp_path / "broken.reseg-session.npz"), "-o", str(out)]) == 1
    assert "broken.reseg-session.npz: cannot be read as a reseg session" in capsys.readouterr().err

    assert (
        main(
            [
                "train",
                str(out),
                "--name",
                "retrained",
                "-o",
                str(models),
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--batch-size",
                "1",
                "--crop",
                "64",
                "64",
                "--validation-fraction",
                "0.5",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "4 slices in 2 scans (OCT)" in capsys.readouterr().out
    assert (models / "retrained.safetensors").is_file()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("key", ["image", "boundaries"])
@pytest.mark.parametrize("name", ["../../../escaped_image.tif", "/tmp/absolute_image.tif", "images\\..\\..\\x.tif"])
def test_a_manifest_cannot_lead_an_export_outside_its_folder(session, tmp_path, name, key):
    folder = tmp_path / "a" / "b" / "c" / "export"
    export_training_set(session, folder)
    manifest = _manifest(folder)
    manifest["items"][0][key] = name
    (folder / "dataset.json").write_text(json.dumps(manifest))
    before = _files(tmp_path)
    with pytest.raises(
        InputError, match=rf"dataset\.json: is not a valid training-set manifest: field 'items\[0\]\.{key}'"
    ):
        export_training_set(session, folder, include_unreviewed=True)
    assert _files(tmp_path) == before


def test_a_symbolic_link_cannot_lead_an_export_outside_its_folder(session, tmp_path):
    folder = tmp_path / "export"
    export_training_set(session, folder)
    (tmp_path / "elsewhere").mkdir()
    for file in (folder / "images").iterdir():
        file.rename(tmp_path / "elsewhere" / file.name)
    (folder / "images").rmdir()
    (folder / "images").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match="leads outside the dataset folder"):
        export_training_set(session, folder, include_unreviewed=True)


def test_a_full_disk_leaves_the_export_folder_as_it_was(session, tmp_path, monkeypatch):
    import errno
    import os

    from reseg.errors import OutputError
    from reseg.io import _write

    folder = tmp_path / "export"
    export_training_set(session, folder)
    before = _files(folder)
    written = []

    def fill_up(path, *args, **kwargs):  # the second file of the export finds the disk full
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(path)
        return original(path, *args, **kwargs)

    original = _write._write_tiff
    monkeypatch.setattr(_write, "_write_tiff", fill_up)
    with pytest.raises(OutputError, match=rf"^{folder}: the export cannot be written: no space left"):
        export_training_set(session, folder, include_unreviewed=True)
    assert _files(folder) == before  # nothing new, nothing half-written, no temporary or staging files


def test_an_export_killed_after_its_commit_is_finished_by_the_next(session, tmp_path, monkeypatch):
    """Killed between the commit (plan written) and the last move: the next export there completes it."""
    from reseg.io import _staged

    folder = tmp_path / "export"
    export_training_set(session, folder)

    def killed(_folder, _staging):
        raise KeyboardInterrupt  # stands in for the kill: the plan is on disk, nothing moved yet

    monkeypatch.setattr(_staged, "_finish", killed)
    with pytest.raises(KeyboardInterrupt):
        export_training_set(session, folder, include_unreviewed=True)
    monkeypatch.undo()
    assert len(_manifest(folder)["items"]) == 2  # not yet landed
    staging = next(folder.glob(".reseg-staged-*"))
    staging.rename(folder / ".reseg-staged-999999-00000000")  # as a killed process left it (its pid gone)
    result = export_training_set(session, folder, include_unreviewed=True)
    assert result.added == [] and result.total == 3  # the killed export's slice 1 landed on recovery
    assert not list(folder.glob(".*"))


def test_an_overwrite_never_follows_a_symbolic_link_out_of_the_folder(session, tmp_path):
    from reseg.errors import OutputError

    folder, elsewhere = tmp_path / "export", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.tif").write_bytes(b"keep me")
    folder.mkdir()
    (folder / "images").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OutputError, match=r"lies outside .* nothing was written"):
        export_training_set(session, folder, overwrite=True)
    assert [p.name for p in elsewhere.iterdir()] == ["precious.tif"]
    assert sorted(p.name for p in folder.iterdir()) == ["images"]  # no staging folder left
