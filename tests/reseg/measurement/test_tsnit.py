"""The TSNIT profile of a peripapillary circle scan: angles from the scan's recorded geometry and the eye,
sector means, checked on a synthetic profile of known shape and on the real Spectralis circle scan's
device-drawn RNFL."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.measurement.tsnit import GARWAY_HEATH, QUADRANTS, start_angle, tsnit_profile

CENTRE = (5.0, 4.0)
RADIUS = 1.8


def _circle(direction_deg: float) -> tuple[float, float, float, float]:
    """A .vol circle position whose start point lies `direction_deg` counterclockwise from +x (y up)."""
    angle = np.radians(direction_deg)
    return (CENTRE[0] + RADIUS * np.cos(angle), CENTRE[1] - RADIUS * np.sin(angle), *CENTRE)


@pytest.mark.parametrize(
    ("direction", "laterality", "anatomical"),
    [(180, "OD", 0), (90, "OD", 90), (0, "OD", 180), (270, "OD", 270), (0, "OS", 0), (180, "OS", 180)],
)
def test_the_start_point_is_named_by_the_eye(direction, laterality, anatomical):
    """Temporal is left of the disc on a right eye's fundus image, right on a left eye's; superior is up."""
    assert start_angle(_circle(direction), laterality) == pytest.approx(anatomical)


def test_quadrant_means_of_a_profile_with_one_thick_quadrant_per_eye():
    """A profile thick only in its second quarter (starting temporal, running TSNIT) is thick superiorly."""
    width = 768
    thickness = np.full(width, 60.0)
    thickness[width // 8 + width // 4 * 0 : width // 8 + width // 4] = 150.0  # 45..135 degrees of the turn
    for laterality, direction in (("OD", 180), ("OS", 0)):
        profile = tsnit_profile(thickness, _circle(direction), laterality)
        means = profile.sector_means(QUADRANTS)
        assert means == pytest.approx({"temporal": 60.0, "superior": 150.0, "nasal": 60.0, "inferior": 60.0})
        assert np.all(np.diff(profile.angle_deg) > 0) and profile.angle_deg[0] == pytest.approx(0.0)
        six = profile.sector_means(GARWAY_HEATH)
        assert six["superotemporal"] == six["superonasal"] == pytest.approx(150.0)
        assert six["nasal"] == six["temporal"] == six["inferonasal"] == pytest.approx(60.0)
        assert profile.figures() == pytest.approx({"average": 82.5, **means, **{k: six[k] for k in list(six)[1:]}})
        assert list(profile.figures())[5:] == ["superotemporal", "superonasal", "inferonasal", "inferotemporal"]


def test_a_start_elsewhere_rotates_the_profile_and_no_thickness_is_none():
    width = 360
    thickness = np.arange(width, dtype=float)  # thickness = degrees travelled from the start
    thickness[:10] = np.nan
    profile = tsnit_profile(thickness, _circle(90), "OD")  # start superior
    assert profile.angle_deg[0] == pytest.approx(0.0)
    # at anatomical angle a the scan has run (a - 90) mod 360 degrees
    assert profile.thickness_um[int(np.argmin(np.abs(profile.angle_deg - 180)))] == pytest.approx(90.0)
    empty = tsnit_profile(np.full(width, np.nan), _circle(180), "OD")
    assert empty.mean() is None and set(empty.sector_means().values()) == {None}


def test_without_the_eye_there_is_no_profile():
    with pytest.raises(ValueError, match="OD or OS"):
        tsnit_profile(np.ones(8), _circle(180), "")


def test_the_real_circle_scan_shows_the_double_hump(shared_data):
    """The Spectralis circle scan's own RNFL (ILM to RNFL boundary from the device) is thickest superiorly and
    inferiorly, thinnest temporally and nasally, as a healthy eye's is (the ISNT pattern)."""
    from reseg.io import read_volume

    volume = read_volume(shared_data("spectralis_vol", "Willis_B_716_2.vol"))
    device = volume.metadata["boundaries"]
    rnfl_um = (device["RNFL"][0] - device["ILM"][0]) * volume.spacing[1] * 1000
    profile = tsnit_profile(rnfl_um, volume.metadata["bscan_positions"][0], volume.metadata["laterality"])
    means = profile.sector_means(QUADRANTS)
    assert min(means["superior"], means["inferior"]) > max(means["temporal"], means["nasal"])
    assert 60 < profile.mean() < 160  # a healthy adult's global RNFL is about 100 um
