"""The Fundus widget as a grader uses it in napari: the SLO image of the scan opened, each B-scan's position on
it (the line of a line scan, the circle around the disc of a circle scan), the current B-scan following the
slider, a click on a line going to that B-scan, and the Review widget's marks shown in their colours."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_reseg._display import LayerTransform
from napari_reseg._fundus_canvas import CURRENT_COLOUR, PATH_COLOURS
from napari_reseg._layer_state import LabelsRecord, pixel_free
from napari_reseg._reader import layer_data
from reseg.classes import OCT_CLASSES
from reseg.io import Volume
from reseg.review.state import SliceStatus


@pytest.fixture
def fundus(dock):
    return dock("Fundus")


def _centre(rect) -> np.ndarray:
    return np.array([rect.center().x(), rect.center().y()])


def test_the_line_and_the_circle_scan_lie_where_they_were_scanned(viewer, fundus, shared_data):
    viewer.open(str(shared_data("spectralis_vol", "Willis_B_716_0.vol")), plugin="napari-reseg")
    assert "line scan, 1 B-scan, right eye (OD)" in fundus.title.text()
    assert fundus.note.isHidden() and not fundus.canvas.isHidden()
    rect = fundus.canvas.image_rect()
    assert rect.width() == pytest.approx(rect.height())  # the 9 x 9 mm fundus keeps its square shape
    [line] = fundus.canvas.drawn_paths
    # Across the whole fundus, left to right, through its middle (the macula).
    np.testing.assert_allclose(line, [[rect.left(), _centre(rect)[1]], [rect.right(), _centre(rect)[1]]], atol=0.5)
    assert fundus.canvas.current == 0

    viewer.open(str(shared_data("spectralis_vol", "Willis_B_716_2.vol")), plugin="napari-reseg")
    assert "circle scan" in fundus.title.text()  # the scan just opened is shown
    [ring] = fundus.canvas.drawn_paths
    centre = ring[:-1].mean(axis=0)
    radius = np.hypot(*(ring - centre).T)
    # Around the optic disc, right of the fundus centre in a right eye; 1.8 mm of the 9 mm fundus.
    assert rect.contains(centre[0], centre[1]) and centre[0] > _centre(rect)[0] + 0.1 * rect.width()
    np.testing.assert_allclose(radius, 1.7995 / (768 * 0.011715) * rect.width(), rtol=2e-3)
    assert ring[0][0] == pytest.approx(centre[0] - radius[0], abs=0.5)  # it starts on the temporal side

    viewer.layers.selection.active = viewer.layers["Willis_B_716_0.vol"]
    assert "line scan" in fundus.title.text() and len(fundus.canvas.drawn_paths[0]) == 2


def test_a_scan_without_a_fundus_says_so(viewer, fundus, small_oct):
    assert fundus.note.text() == "this file holds no fundus image"
    assert not fundus.note.isHidden() and fundus.canvas.isHidden()
    assert "scan.tif" in fundus.title.text()


N_BSCANS = 49


@pytest.fixture
def raster(viewer):
    """A 49-B-scan volume scan with its fundus, as a reader gives it to napari (the real .vol files are one
    B-scan each): 6 mm vertical B-scans side by side, 125 um apart, left to right, on a 10 x 8 mm fundus."""
    x_mm = 2.0 + np.arange(N_BSCANS) * 0.125
    positions = np.column_stack([x_mm, np.full(N_BSCANS, 1.0), x_mm, np.full(N_BSCANS, 7.0)])
    rows, columns = np.mgrid[0:400, 0:500]
    metadata = {
        "fundus": ((rows + columns) % 256).astype(np.uint8),
        "fundus_spacing": (0.02, 0.02),
        "bscan_positions": positions,
        "scan_pattern": "volume",
        "laterality": "OS",
        "spacing_known": (True, True, True),
    }
    bscans = np.random.default_rng(3).integers(0, 255, (N_BSCANS, 48, 64), dtype=np.uint8)
    volume = Volume(bscans, (0.125, 0.0039, 0.094), "OCT", metadata=metadata)
    data, kwargs, _ = layer_data(volume, "raster")
    return viewer.add_image(data, **kwargs)


def _click(qtbot, canvas, point) -> None:
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(round(point[0]), round(point[1])))


def test_the_slider_moves_the_highlight_and_a_click_on_a_line_goes_to_its_b_scan(viewer, raster, fundus, qtbot):
    canvas = fundus.canvas
    paths = canvas.drawn_paths
    assert len(paths) == N_BSCANS and "volume scan, 49 B-scans, left eye (OS)" in fundus.title.text()
    assert np.all(np.diff([path[0][0] for path in paths]) > 0)  # left to right, in order
    rect = canvas.image_rect()
    assert rect.width() / rect.height() == pytest.approx(500 / 400) and rect.width() > 150  # 10 x 8 mm

    viewer.dims.set_current_step(0, 30)
    assert canvas.current == 30 and "B-scan 30 (of 0-48)" in fundus.position_label.text()

    target = paths[12].mean(axis=0) + np.array([1.0, 0.0])  # a pixel beside the middle of B-scan 12's line
    _click(qtbot, canvas, target)
    assert viewer.dims.current_step[0] == 12 and canvas.current == 12
    _click(qtbot, canvas, (rect.left() + 5, rect.top() + 5))  # on the fundus, far from every B-scan
    assert viewer.dims.current_step[0] == 12


def _colour_near(image, point) -> np.ndarray:
    """The most saturated colour drawn within a pixel of `point` (a line is 1.5 px wide, antialiased)."""
    colours = [
        image.pixelColor(round(point[0]) + dx, round(point[1]) + dy).getRgb()[:3]
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
    ]
    return np.array(max(colours, key=lambda c: max(c) - min(c)), dtype=float)


def _is(colour: np.ndarray, expected) -> bool:
    return bool(np.abs(colour - np.array(expected.getRgb()[:3])).max() < 45)


def test_review_marks_follow_the_review_widget(viewer, raster, fundus, dock, click):
    record = raster.metadata["reseg"]
    prediction = np.zeros(raster.data.shape, np.uint8)
    labels = LabelsRecord(record.key, OCT_CLASSES, pixel_free(record.geometry), "OCT", prediction=prediction)
    transform = LayerTransform.of(raster).kwargs()
    viewer.add_labels(prediction.copy(), name="raster labels", metadata={"reseg": labels}, **transform)
    review = dock("Review")
    assert SliceStatus.REVIEWED not in fundus.canvas.statuses
    viewer.dims.set_current_step(0, 5)
    click(review.buttons["reviewed"])  # B-scan 5 reviewed; Review goes on to 6
    click(review.buttons["skip"])  # 6 skipped; on to 7
    statuses = fundus.canvas.statuses
    assert statuses[5] is SliceStatus.REVIEWED and statuses[6] is SliceStatus.SKIPPED
    assert statuses.count(SliceStatus.UNREVIEWED) == N_BSCANS - 2
    assert fundus.canvas.current == 7 and "7 (of 0-48): unreviewed" in fundus.position_label.text()

    canvas = fundus.canvas
    image = canvas.grab().toImage()  # what the grader sees, at the size the dock gives it
    paths = canvas.drawn_paths
    assert canvas.image_rect().width() > 150
    assert _is(_colour_near(image, paths[5].mean(axis=0)), PATH_COLOURS[SliceStatus.REVIEWED])
    assert _is(_colour_near(image, paths[6].mean(axis=0)), PATH_COLOURS[SliceStatus.SKIPPED])
    assert _is(_colour_near(image, paths[7].mean(axis=0)), CURRENT_COLOUR)
    assert not _is(_colour_near(image, paths[20].mean(axis=0)), PATH_COLOURS[SliceStatus.REVIEWED])
