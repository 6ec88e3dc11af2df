"""Saving a labels layer through the plugin writes it in register with the scan it was computed for, and the
file reopens as labels with their class names and colours."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from napari.layers import Labels

from reseg.classes import CT_CLASSES, OCT_CLASSES


@pytest.mark.slow
def test_labels_saved_as_nifti_overlay_an_lps_source_exactly(viewer, segment, click, wait_for, tmp_path):
    affine = np.array([[-0.9, 0, 0, 100.0], [0, -0.9, 0, 80.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])
    hu = np.full((40, 36, 4), -1000, np.int16)
    hu[5:30, 4:20, :] = 60  # an asymmetric block of soft tissue
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "lps.nii.gz")
    [image] = viewer.open(str(tmp_path / "lps.nii.gz"), plugin="napari-reseg")
    assert segment.model_combo.currentText() == "l2gnet-ct"
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers[f"{image.name} labels"]
    labels.data[:] = 0
    labels.data[image.data > 0] = 5  # "liver" exactly where the tissue is, in the viewer's orientation

    [written] = labels.save(str(tmp_path / "organs.nii.gz"), plugin="napari-reseg")
    saved = nib.load(written)
    np.testing.assert_allclose(saved.affine, affine)
    np.testing.assert_array_equal(np.asarray(saved.dataobj) == 5, hu > 0)
    assert saved.header.get_intent()[0] == "label"

    [reopened] = viewer.open(written, plugin="napari-reseg")
    assert isinstance(reopened, Labels) and list(reopened.features["class"]) == [c.name for c in CT_CLASSES]
    np.testing.assert_array_equal(reopened.data, labels.data)
    np.testing.assert_allclose(reopened.scale, image.scale)  # the scan's display transform: they overlay
    np.testing.assert_allclose(reopened.translate, image.translate)
    assert reopened.name not in [segment.image_combo.itemText(i) for i in range(segment.image_combo.count())]


@pytest.mark.slow
@pytest.mark.smoke
def test_oct_labels_saved_as_tiff_reopen_as_labels_on_their_scan(
    viewer, segment, small_oct, click, wait_for, tmp_path, answers
):
    image, _ = small_oct
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers["scan.tif labels"]
    [written] = labels.save(str(tmp_path / "corrected.tif"), plugin="napari-reseg")
    viewer.layers.remove(labels)

    [reopened] = viewer.open(written, plugin="napari-reseg")
    assert isinstance(reopened, Labels) and list(reopened.features["class"]) == [c.name for c in OCT_CLASSES]
    np.testing.assert_allclose(reopened.scale, image.scale)
    rnfl = OCT_CLASSES[1]
    np.testing.assert_allclose(reopened.colormap.map(np.array([1]))[0][:3], np.array(rnfl.color) / 255, atol=1e-3)

    answers.append(False)  # a run on the scan targets the reopened labels, and asks before replacing them
    click(segment.run_button)
    assert len(answers.asked) == 1 and reopened.name in answers.asked[0]
    assert len([layer for layer in viewer.layers if isinstance(layer, Labels)]) == 1


def test_labels_of_a_plain_layer_saved_as_tiff_keep_scale(viewer, tmp_path):
    labels = viewer.add_labels(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), scale=(2.0, 0.5, 0.25))
    [written] = labels.save(str(tmp_path / "labels.tif"), plugin="napari-reseg")
    np.testing.assert_array_equal(tifffile.imread(written), labels.data)
    from reseg.io import read_volume

    volume = read_volume(written)
    assert volume.spacing == (2.0, 0.5, 0.25) and volume.label_classes is None  # no classes to record


def test_the_command_line_refuses_to_segment_a_label_map(tmp_path, capsys):
    from reseg.cli import main
    from reseg.io import Volume, write_labels

    write_labels(
        tmp_path / "labels.tif",
        np.zeros((1, 8, 8), np.uint8),
        like=Volume(np.zeros((1, 8, 8), np.uint8)),
        classes=OCT_CLASSES,
    )
    assert main(["segment", str(tmp_path / "labels.tif"), "-o", str(tmp_path / "out.tif")]) == 1
    assert "is a label map" in capsys.readouterr().err and not (tmp_path / "out.tif").exists()


def test_a_damaged_label_description_is_refused_naming_the_file(tmp_path):
    from reseg.errors import InputError
    from reseg.io import read_volume

    damaged = '{"format": "reseg-labels", "version": 1, "modality": "OCT", "classes": [{"name": 1}]}'
    tifffile.imwrite(
        tmp_path / "damaged.tif",
        np.zeros((2, 8, 8), np.uint8),
        imagej=True,
        metadata={"axes": "ZYX", "Properties": {"reseg_labels": damaged}},
    )
    with pytest.raises(InputError, match=r"damaged\.tif.*label description is malformed"):
        read_volume(tmp_path / "damaged.tif")
    tifffile.imwrite(
        tmp_path / "other.tif",
        np.zeros((2, 8, 8), np.uint8),
        imagej=True,
        metadata={"axes": "ZYX", "Properties": {"reseg_labels": "written by something else"}},
    )
    assert read_volume(tmp_path / "other.tif").label_classes is None  # not ours: an ordinary image


def test_a_full_disk_is_one_message_and_no_file(viewer, tmp_path, monkeypatch):
    import errno
    import os

    from napari_reseg import _writer

    def disk_fills_up(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    shown = []
    monkeypatch.setattr(_writer, "show_error", shown.append)
    monkeypatch.setattr(tifffile, "imwrite", disk_fills_up)
    folder = tmp_path / "saved"
    folder.mkdir()
    labels = viewer.add_labels(np.zeros((2, 3, 4), np.uint8), name="corrected")
    assert labels.save(str(folder / "labels.tif"), plugin="napari-reseg") == []
    assert len(shown) == 1 and "\n" not in shown[0]
    assert shown[0].startswith(f"napari-reseg could not save 'corrected' to {folder / 'labels.tif'}: ")
    assert "no space left" in shown[0]
    assert list(folder.iterdir()) == []  # nothing half-written, no temporary file
