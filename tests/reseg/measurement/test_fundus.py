"""B-scan positions on the fundus image: where the real Spectralis scans lie on their SLO image, and which
B-scan a click on the fundus picks, for a line, a circle and a 49-B-scan volume."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.errors import InputError
from reseg.io import Volume, read_volume
from reseg.measurement.fundus import distances_to_paths, fundus_view, nearest_bscan


def _view_of(volume: Volume):
    view = fundus_view(volume.metadata, volume.data.shape[0], volume.source)
    assert view is not None
    return view


def test_the_real_line_scan_crosses_its_fundus_through_the_middle(shared_data):
    volume = read_volume(shared_data("spectralis_vol", "Willis_B_716_0.vol"))
    view = _view_of(volume)
    assert view.size == (768, 768) and view.image.dtype == np.uint8 and view.note is None and not view.circle
    [path] = view.paths
    # The macular line scan runs left to right across the whole 9.08 mm fundus, at its half height.
    np.testing.assert_allclose(path, [[0.0, 384.0], [768.0, 384.0]], atol=0.01)
    assert nearest_bscan(view.paths, (300.0, 390.0), within=8) == 0
    assert nearest_bscan(view.paths, (300.0, 400.0), within=8) is None


def test_the_real_circle_scan_is_a_circle_around_the_optic_disc_starting_temporally(shared_data):
    volume = read_volume(shared_data("spectralis_vol", "Willis_B_716_2.vol"))
    view = _view_of(volume)
    assert view.circle and view.note is None
    [ring] = view.paths
    np.testing.assert_allclose(ring[0], ring[-1], atol=1e-9)  # closed
    centre = ring[:-1].mean(axis=0)
    radius = np.hypot(*(ring - centre).T)
    width, height = view.size
    assert 0 < centre[0] < width and 0 < centre[1] < height
    # Its length is the B-scan's: 768 A-scans of the file's lateral spacing, a 1.8 mm radius.
    circumference_px = 768 * volume.spacing[2] / volume.metadata["fundus_spacing"][1]
    np.testing.assert_allclose(radius, circumference_px / (2 * np.pi), rtol=1e-3)
    # The optic disc is the darkest large patch of this SLO image; the circle is centred on it.
    fundus = view.image.astype(float)
    cy, cx = int(centre[1]), int(centre[0])
    disc = fundus[cy - 40 : cy + 40, cx - 40 : cx + 40].mean()
    assert disc < fundus.mean() - 20
    # The scan starts on the temporal side: left of the disc in a right eye (OD) as the fundus shows it.
    assert volume.metadata["laterality"] == "OD" and ring[0][0] < centre[0] - radius[0] * 0.99
    # A click on the circle picks it wherever it is clicked; one at the disc centre does not.
    on_circle = centre + radius[0] * np.array([np.cos(1.0), np.sin(1.0)])
    assert nearest_bscan(view.paths, tuple(on_circle + 3), within=8) == 0
    assert nearest_bscan(view.paths, tuple(centre), within=8) is None


def _volume_scan(n_bscans: int = 49) -> Volume:
    """A 6 x 6 mm raster volume as a device records it: 49 horizontal B-scans 125 um apart, top to bottom, on
    a 512 x 512 fundus of 15 um pixels (a synthetic stand-in: the real .vol files are a line and a circle)."""
    y = 0.84 + np.arange(n_bscans) * 0.125
    positions = np.stack([np.full(n_bscans, 0.84), y, np.full(n_bscans, 6.84), y], axis=1)
    metadata = {
        "fundus": np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8),
        "fundus_spacing": (0.015, 0.015),
        "bscan_positions": positions,
        "scan_pattern": "volume",
    }
    return Volume(np.zeros((n_bscans, 4, 8), np.uint8), (0.125, 0.0039, 0.0117), "OCT", metadata=metadata)


def test_a_volume_scan_places_each_b_scan_and_a_click_picks_the_nearest():
    view = _view_of(_volume_scan())
    assert len(view.paths) == 49 and view.note is None
    rows = np.array([path[0][1] for path in view.paths])
    np.testing.assert_allclose(np.diff(rows), 0.125 / 0.015)  # 8.33 px apart, top to bottom
    assert all(path[0][0] == pytest.approx(56.0) and path[1][0] == pytest.approx(456.0) for path in view.paths)
    # A click between B-scans 10 and 11, nearer 11, picks 11; one beside the scanned area picks none.
    assert nearest_bscan(view.paths, (200.0, rows[10] + 5.0), within=6) == 11
    assert nearest_bscan(view.paths, (20.0, rows[10]), within=6) is None
    assert distances_to_paths(view.paths, (20.0, rows[10]))[10] == pytest.approx(36.0)


def test_colour_and_16_bit_fundus_images_become_displayable_uint8():
    volume = _volume_scan(2)
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[..., 0] = 200
    volume.metadata["fundus"] = rgb
    assert _view_of(volume).image.shape == (512, 512, 3)
    volume.metadata["fundus"] = np.linspace(0, 4000, 512 * 512, dtype=np.uint16).reshape(512, 512)
    image = _view_of(volume).image
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255


def test_what_a_view_cannot_show_is_said():
    volume = _volume_scan(3)
    assert fundus_view({}, 3, "scan.vol") is None  # no fundus: nothing to show
    del volume.metadata["bscan_positions"]
    assert "does not record where" in (_view_of(volume).note or "")
    volume = _volume_scan(3)
    volume.metadata["bscan_positions"] = volume.metadata["bscan_positions"] + 100.0
    assert "outside its fundus image" in (_view_of(volume).note or "")
    with pytest.raises(InputError, match=r"scan\.vol: records \(2, 4\) B-scan positions .* for 3 B-scans"):
        fundus_view({**volume.metadata, "bscan_positions": np.zeros((2, 4))}, 3, "scan.vol")
    with pytest.raises(InputError, match=r"scan\.vol: holds a fundus image of shape \(3, 4, 5\)"):
        fundus_view({**volume.metadata, "fundus": np.zeros((3, 4, 5))}, 3, "scan.vol")


def test_radial_scans_are_lines_through_the_centre_and_a_click_picks_the_one_under_it():
    angles = np.arange(6) * np.pi / 6  # six 6 mm lines, 30 degrees apart, centred at (4, 4) mm
    half = 3.0 * np.column_stack([np.cos(angles), np.sin(angles)])
    positions = np.column_stack([4.0 - half, 4.0 + half])
    metadata = {
        "fundus": np.zeros((400, 400), np.uint8),
        "fundus_spacing": (0.02, 0.02),
        "bscan_positions": positions,
        "scan_pattern": "radial",
    }
    view = fundus_view(metadata, 6, "radial.vol")
    assert view is not None and not view.circle and len(view.paths) == 6
    assert all(np.allclose(path.mean(axis=0), (200.0, 200.0)) for path in view.paths)  # all through the centre
    near_end_of_2 = (200.0, 200.0) + 140.0 * np.array([np.cos(angles[2]), np.sin(angles[2])]) + (2.0, -1.0)
    assert nearest_bscan(view.paths, tuple(near_end_of_2), within=6) == 2
    assert nearest_bscan(view.paths, (200.0, 200.0), within=6) == 0  # where they cross, the first wins
