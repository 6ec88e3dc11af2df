"""The peripapillary RNFL thickness profile of a circle scan around the optic disc (TSNIT), the figure
glaucoma graders read: thickness by angle from temporal through superior, nasal, inferior back to temporal,
with its quadrant and sector means.

Angles are anatomical, in degrees: 0 temporal, 90 superior, 180 nasal, 270 inferior, the same for either eye.
Sectors: the four 90-degree quadrants centred on those directions, and the six sectors of the Spectralis
report adapted to Garway-Heath's structure-function map (Garway-Heath et al., Ophthalmology 107(10), 2000):
temporal 316-45, superotemporal 46-90, superonasal 91-135, nasal 136-225, inferonasal 226-270,
inferotemporal 271-315 degrees (as listed e.g. in Bio-protocol Bio-101 r8754279).

Where the circle lies and which way it runs: a Heidelberg `.vol` circle scan records (`bscan_positions`) its
start point and, in the "end" fields, the circle's centre (on the real scan Willis_B_716_2.vol the distance
between them, 1.80 mm, times 2 pi is the B-scan's length, 768 x 14.72 um = 11.31 mm). The start point there
lies level with the centre on the temporal side of a right eye, as Heidelberg's circle scans start, and the
profile read from it shows the double hump of superior and inferior RNFL at a quarter and three quarters of
the way. Assumed, as the Spectralis presents its circle scans as TSNIT for both eyes: the scan runs from
temporal through superior to nasal, i.e. clockwise on the fundus image for a right eye (OD), anticlockwise
for a left eye (OS). Each A-scan's angle is then the start point's angle plus its share of the full turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Sector = tuple[str, float, float]  # name, first and last angle (degrees, inclusive of the start, wrapping)
QUADRANTS: tuple[Sector, ...] = (
    ("temporal", 315.0, 45.0),
    ("superior", 45.0, 135.0),
    ("nasal", 135.0, 225.0),
    ("inferior", 225.0, 315.0),
)
GARWAY_HEATH: tuple[Sector, ...] = (
    ("temporal", 315.0, 45.0),
    ("superotemporal", 45.0, 90.0),
    ("superonasal", 90.0, 135.0),
    ("nasal", 135.0, 225.0),
    ("inferonasal", 225.0, 270.0),
    ("inferotemporal", 270.0, 315.0),
)


@dataclass(frozen=True)
class TsnitProfile:
    """Thickness (um) along the circle ordered by anatomical angle (degrees, 0 temporal .. 360)."""

    angle_deg: np.ndarray
    thickness_um: np.ndarray
    laterality: str

    def sector_means(self, sectors: Sequence[Sector] = QUADRANTS) -> dict[str, float | None]:
        """Mean thickness of each sector over its A-scans with a thickness; None where it has none."""
        means: dict[str, float | None] = {}
        for name, first, last in sectors:
            if first < last:
                inside = (self.angle_deg >= first) & (self.angle_deg < last)
            else:  # the sector wraps through 0 (temporal)
                inside = (self.angle_deg >= first) | (self.angle_deg < last)
            values = self.thickness_um[inside & np.isfinite(self.thickness_um)]
            means[name] = float(values.mean()) if values.size else None
        return means

    def figures(self) -> dict[str, float | None]:
        """What a report lists: the average, the four quadrants, then the four oblique sectors of
        :data:`GARWAY_HEATH` (its temporal and nasal sectors are the quadrants')."""
        oblique = [sector for sector in GARWAY_HEATH if sector[0] not in {name for name, _, _ in QUADRANTS}]
        return {"average": self.mean(), **self.sector_means(QUADRANTS), **self.sector_means(oblique)}

    def mean(self) -> float | None:
        """The global (360-degree) mean, what devices report as the average RNFL thickness."""
        known = self.thickness_um[np.isfinite(self.thickness_um)]
        return float(known.mean()) if known.size else None


def start_angle(circle: Sequence[float], laterality: str) -> float:
    """Anatomical angle (degrees) of the circle's start point; `circle` is the `.vol` B-scan position
    (start x, start y, centre x, centre y) in fundus-image mm, y down."""
    start_x, start_y, centre_x, centre_y = (float(v) for v in circle)
    if math.hypot(start_x - centre_x, start_y - centre_y) == 0:
        raise ValueError("the circle scan's start point is its centre: its position on the fundus is unknown")
    image_angle = math.degrees(math.atan2(centre_y - start_y, start_x - centre_x))  # counterclockwise, y up
    # temporal is to the left of the disc on the fundus image of a right eye, to the right for a left eye
    anatomical = 180.0 - image_angle if laterality == "OD" else image_angle
    return anatomical % 360.0


def tsnit_profile(thickness_um: np.ndarray, circle: Sequence[float], laterality: str | None) -> TsnitProfile:
    """The TSNIT profile of one circle B-scan's (W,) thickness; `circle` as in :func:`start_angle`.

    Raises ValueError without the eye's laterality: nasal and temporal, and the direction of the scan,
    depend on it."""
    side = (laterality or "").upper()
    if side not in ("OD", "OS"):
        raise ValueError(f"the eye (OD or OS) is not recorded ({laterality!r}), so temporal and nasal are unknown")
    values = np.asarray(thickness_um, dtype=np.float64).ravel()
    angles = (start_angle(circle, side) + 360.0 * np.arange(values.size) / values.size) % 360.0
    order = np.argsort(angles, kind="stable")
    return TsnitProfile(angles[order], values[order], side)
