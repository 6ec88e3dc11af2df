"""The Thickness widget as a grader uses it in napari: a scan and its OCT labels open, Thickness docked, the
en-face map and the ETDRS sector means are the engine's (`reseg measure`'s) figures, the grid's centre moves
when dragged or typed, an edit of one B-scan changes that B-scan's row of the map and the table at once, undo
restores them, and a real circle scan gets its TSNIT profile."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from reseg.classes import OCT_CLASSES
from reseg.cli import main
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.io import Volume, read_volume, write_image, write_labels
from reseg.measurement.etdrs import en_face, sector_map, sector_means, sector_names
from reseg.measurement.thickness import TOTAL_RETINA, layer_thickness
from reseg.measurement.tsnit import QUADRANTS, tsnit_profile

SPACING = (0.25, 0.00387, 0.025)  # 25 B-scans over 6.25 mm, 256 A-scans over 6.4 mm: the 6 mm grid fits


@pytest.fixture(scope="module")
def macula_files(tmp_path_factory):
    """A phantom macular volume on disk with its exact labels (saved in register, as Segment saves them)."""
    folder = tmp_path_factory.mktemp("macula")
    phantom = make_oct_phantom(n_bscans=25, height=320, width=256, seed=11, spacing=SPACING)
    scan = write_image(folder / "macula.tif", Volume(phantom.image, phantom.spacing, "OCT", folder / "macula.tif"))
    labels = write_labels(folder / "macula_labels.tif", phantom.labels, read_volume(scan), OCT_CLASSES)
    return phantom, scan, labels


@pytest.fixture
def macula(viewer, macula_files, dock):
    """Scan and labels opened with napari-reseg, Thickness docked."""
    phantom, scan, labels_path = macula_files
    viewer.open(str(scan), plugin="napari-reseg")
    [labels] = viewer.open(str(labels_path), plugin="napari-reseg")
    return phantom, labels, dock("Thickness")


def _layer(viewer, words):
    return next(layer for layer in viewer.layers if words in layer.name)


def _etdrs_of_reseg_measure(scan, labels, folder, layer):
    output = folder / "thickness.csv"
    assert main(["measure", str(scan), str(labels), "-o", str(output)]) == 0
    with open(output, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["sector"]: float(row["mean_um"]) for row in rows if row["region"] == "etdrs" and row["layer"] == layer}


def test_the_map_and_the_sectors_are_the_engines_figures(viewer, macula, macula_files, tmp_path):
    phantom, _, widget = macula
    _, scan, labels_path = macula_files
    truth = layer_thickness(boundary_rows(phantom.labels), SPACING[1])
    thickness_map = _layer(viewer, "thickness map")
    assert thickness_map.name == f"macula.tif {TOTAL_RETINA} thickness map (um)"
    np.testing.assert_allclose(np.asarray(thickness_map.data), truth[TOTAL_RETINA], rtol=1e-6)
    low, high = thickness_map.contrast_limits
    assert 100 < low < high < 600  # um, the range of a retina's thickness
    expected = _etdrs_of_reseg_measure(scan, labels_path, tmp_path, TOTAL_RETINA)
    shown = widget.sector_table()
    assert list(shown) == list(sector_names(None)) and len(shown) == 9
    assert shown == pytest.approx(expected, abs=0.06)  # the table rounds to 0.1 um
    assert shown["central"] < min(shown[name] for name in list(shown)[1:5])  # the foveal pit

    widget.layer_combo.setCurrentText("RNFL")
    np.testing.assert_allclose(np.asarray(thickness_map.data), truth["RNFL"], rtol=1e-6)
    assert widget.sector_table() == pytest.approx(
        _etdrs_of_reseg_measure(scan, labels_path, tmp_path, "RNFL"), abs=0.06
    )


def test_the_map_and_grid_lie_beside_the_b_scan(viewer, macula):
    _, labels, _ = macula
    b_scan_right = labels.extent.world[1][-1]
    for words in ("thickness map", "ETDRS grid", "ETDRS centre"):
        assert _layer(viewer, words).extent.world[0][-1] > b_scan_right, words
    assert viewer.layers.selection.active.name == labels.name  # the grader goes on editing the labels


def test_moving_the_centre_moves_the_sectors(viewer, macula):
    phantom, _, widget = macula
    found = widget.centre
    grid = en_face((25, 256), (SPACING[0], SPACING[2]))
    thickness = layer_thickness(boundary_rows(phantom.labels), SPACING[1])[TOTAL_RETINA]
    names = sector_names(None)
    at_fovea = widget.sector_table()

    centre_point = _layer(viewer, "ETDRS centre")
    moved = (found[0], found[1] + 1.0)
    centre_point.data = np.array([moved])  # where the grader's drag leaves the point
    assert widget.centre == pytest.approx(moved) and widget.centre_x.value() == pytest.approx(moved[1], abs=0.01)
    expected = sector_means(thickness, sector_map(grid, moved), names)
    assert widget.sector_table() == pytest.approx(expected, abs=0.06)
    assert widget.sector_table()["central"] > at_fovea["central"] + 10  # off the pit, the centre is thicker
    grid_layer = _layer(viewer, "ETDRS grid")
    np.testing.assert_allclose(np.asarray(grid_layer.data[0]).mean(axis=0), moved, atol=1e-5)  # the circles too
    assert "moved by you" in widget.status.text()

    widget.centre_y.setValue(found[0] - 0.5)  # typed
    assert np.asarray(centre_point.data)[0] == pytest.approx((found[0] - 0.5, moved[1]), abs=1e-6)
    widget.fovea_button.click()
    assert widget.centre == pytest.approx(found) and widget.sector_table() == at_fovea


def test_an_edit_of_one_b_scan_changes_its_row_and_the_table_and_undo_restores(viewer, macula, qtbot):
    _, labels, widget = macula
    widget.layer_combo.setCurrentText("RNFL")
    thickness_map = _layer(viewer, "thickness map")
    before_map, before_table = np.asarray(thickness_map.data).copy(), widget.sector_table()
    z = 12  # the B-scan through the fovea
    data = np.asarray(labels.data)
    columns = np.array([c for c in range(120, 180) if (data[z, :, c] == 2).sum() > 8])  # right of the pit
    assert len(columns) > 40
    rows = [int(np.argmax(data[z, :, c] == 2)) for c in columns]  # the first GCL+IPL row of each A-scan
    labels.selected_label = 1  # RNFL, painted over the top 8 rows of GCL+IPL
    cells = [(z, row + d, c) for c, row in zip(columns, rows, strict=True) for d in range(8)]
    indices = tuple(np.array(axis) for axis in zip(*cells, strict=True))
    labels.data_setitem(indices, 1)  # as the boundary editor writes
    qtbot.waitUntil(lambda: widget.sector_table() != before_table, timeout=2000)
    after = np.asarray(thickness_map.data)
    changed_rows = np.nonzero(np.any(after != before_map, axis=1))[0]
    assert list(changed_rows) == [z]
    np.testing.assert_allclose(after[z, columns] - before_map[z, columns], 8 * SPACING[1] * 1000, rtol=1e-6)
    assert widget.sector_table()["inner right"] > before_table["inner right"]

    labels.undo()
    qtbot.waitUntil(lambda: widget.sector_table() == before_table, timeout=2000)
    np.testing.assert_array_equal(np.asarray(thickness_map.data), before_map)

    labels.paint((z, rows[20] + 3, columns[20]), 1)  # a brush dab, as napari's paint tool paints
    qtbot.waitUntil(lambda: widget.sector_table() != before_table, timeout=2000)
    assert list(np.nonzero(np.any(np.asarray(thickness_map.data) != before_map, axis=1))[0]) == [z]


def test_a_scan_without_its_pixel_size_gets_a_clear_line_and_no_figures(viewer, dock, tmp_path):
    phantom = make_oct_phantom(n_bscans=3, height=224, width=96, seed=2)
    scan = tmp_path / "bare.tif"
    tifffile.imwrite(scan, phantom.image, photometric="minisblack")  # no pixel size recorded
    labels_path = write_labels(tmp_path / "bare_labels.tif", phantom.labels, read_volume(scan), OCT_CLASSES)
    viewer.open(str(scan), plugin="napari-reseg")
    viewer.open(str(labels_path), plugin="napari-reseg")
    widget = dock("Thickness")
    assert widget.status.text() == "thickness needs the scan's pixel spacing: bare.tif does not record it"
    assert widget.table.rowCount() == 0 and not any("thickness map" in layer.name for layer in viewer.layers)


@pytest.mark.slow
def test_a_real_circle_scan_after_segmenting_shows_its_tsnit_profile(
    viewer, segment, dock, shared_data, click, wait_for
):
    path = shared_data("spectralis_vol", "Willis_B_716_2.vol")
    [image] = viewer.open(str(path), plugin="napari-reseg")
    click(segment.run_button)
    wait_for(segment)
    widget = dock("Thickness")
    labels = viewer.layers[f"{image.name} labels"]
    assert widget.labels_label.text() == f"labels: {labels.name}"
    assert widget.layer_combo.currentText() == "RNFL" and widget.plot.isVisibleTo(widget)
    volume = read_volume(path)
    stack = np.asarray(labels.data).reshape(-1, *volume.data.shape[-2:])
    rnfl = layer_thickness(boundary_rows(stack), volume.spacing[1])["RNFL"][0]
    profile = tsnit_profile(rnfl, volume.metadata["bscan_positions"][0], "OD")
    np.testing.assert_array_equal(widget.plot.profile.thickness_um, profile.thickness_um)
    shown = widget.sector_table()
    quadrants = {name: shown[name] for name, _, _ in QUADRANTS}
    assert quadrants == pytest.approx(profile.sector_means(QUADRANTS), abs=0.06)
    assert all(20 < mean < 250 for mean in quadrants.values())  # um: a retinal nerve fibre layer's
    assert not any("thickness map" in layer.name for layer in viewer.layers)  # one B-scan: no en-face map
