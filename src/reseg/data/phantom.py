"""Synthetic Spectralis-like OCT volumes with exact layer labels.

The phantom exists because the real data we may use (Duke DME) has no layer annotations and may not ship
with the package: tests, sample data and pre-training need images whose labels are known exactly and that
look close enough to a display-scaled Spectralis B-scan that a model or a reviewer is not surprised by them.

How a volume is made, in order (every step vectorised over the whole volume):

1. Geometry. Bruch's membrane (BM) is a smooth surface over (B-scan, column): a spherical bowl (the eye's
   curvature) with a random tilt, vertical offset and a few random long-wavelength undulations. Seven layer
   thicknesses are stacked upwards from BM. They are functions of the distance to a foveal centre so that
   the inner layers (RNFL, GCL+IPL) vanish in the pit, INL/OPL thin to a pixel or two, the ONL is thickest at
   the fovea, GCL+IPL peaks on a parafoveal ring and the RNFL thickens towards the (randomly left or right)
   nasal side. Because everything is a function of millimetre coordinates, neighbouring B-scans are
   coherent and slices far from the fovea have no pit.
2. Optional intraretinal fluid: ellipsoidal cysts hosted by INL, OPL or ONL, often a large one under the
   foveal centre. The host layer is swollen by a smooth dome at least as tall as the cyst (as oedema
   thickens a real retina), so a cyst always lies strictly between ILM and the top of the ellipsoid zone.
3. Labels come from the boundaries: a pixel belongs to the layer whose top boundary is the last one above
   its centre. This makes the ordering invariant (0, 1..7 non-decreasing, 8) hold by construction.
4. Reflectivity: each layer (and a few sub-layers without a class of their own: GCL vs IPL, the external
   limiting membrane, OS / interdigitation / RPE) gets a mean display value measured on Duke B-scans, which
   is turned into linear intensity (Spectralis displays intensity**0.25). The choroid decays exponentially
   with depth and has dark vessel lumens and vertical streaks. Retinal vessels add a bright spot and a dark
   shadow over everything beneath. The map is blurred by an axial/lateral point-spread function.
5. Noise: multiplicative, spatially correlated log-normal speckle (Spectralis averages several frames, so
   the speckle is milder than fully developed Rayleigh speckle), plus an additive correlated noise floor
   that is exponential minus an offset, clipped at zero. That reproduces the grainy vitreous of the Duke
   PNGs with its ~15 % black pixels, and the floor dims with depth as in those images.
6. Display mapping: ``255 * intensity**0.25``, rounded to uint8.

Each step is one or a few private stage functions below and :func:`make_oct_phantom` only calls them in
turn; the order in which they draw from the one random generator is part of what a seed means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["DEFAULT_SPACING", "PATHOLOGIES", "OCTPhantom", "make_oct_phantom"]

# (between B-scans, axial, lateral) in millimetres; axial/lateral are the Spectralis values of the Duke data.
DEFAULT_SPACING: tuple[float, float, float] = (0.12, 0.00387, 0.0113)

# Mean display values (0-255, as in the Duke PNGs) of each tissue, read off column profiles of real B-scans.
# Keys that are not classes (gcl, ipl, elm, myoid, os, iz, rpe) are sub-layers that give real layers their
# internal structure; class 6 (ellipsoid zone) and class 7 (OS+RPE) in particular are two bright bands with
# a darker gap between them.
_DISPLAY = {
    "rnfl": 132.0,
    "gcl": 80.0,
    "ipl": 90.0,
    "inl": 57.0,
    "opl": 80.0,
    "onl": 43.0,
    "elm": 66.0,
    "myoid": 52.0,
    "ez": 154.0,
    "os": 108.0,
    "iz": 128.0,
    "rpe": 200.0,
    "choroid": 120.0,
    "cyst": 36.0,
    "vessel": 140.0,
}


@dataclass
class OCTPhantom:
    """A synthetic OCT volume with its exact labels.

    ``image`` is uint8 (Z, H, W), display-scaled like a Spectralis export; ``labels`` uses the 10-class
    convention of :data:`reseg.classes.OCT_CLASSES`; ``spacing`` is (between B-scans, axial, lateral) in mm.
    ``surfaces`` holds the eight boundary heights (ILM, tops of classes 2..7, BM) as fractional rows, shape
    (8, Z, W), and ``fovea`` the pit centre as fractional (B-scan index, column) - it may lie outside the
    volume. Both are ground truth for boundary-based metrics and for tests.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float] = DEFAULT_SPACING
    surfaces: np.ndarray | None = field(default=None, repr=False)
    fovea: tuple[float, float] | None = None


# -------------------------------------------------------------------------------------------------- helpers


def _smooth_field(
    rng: np.random.Generator, xx: np.ndarray, zz: np.ndarray, wavelength_mm: float, n_terms: int = 6
) -> np.ndarray:
    """A smooth random field over (B-scan, column) with unit standard deviation.

    A sum of a few plane waves with random direction, phase and a wavelength around ``wavelength_mm``: cheap,
    smooth in both directions (so the volume stays coherent across B-scans) and exactly reproducible.
    """
    k = 2.0 * np.pi / (wavelength_mm * rng.uniform(0.6, 1.6, n_terms))
    theta = rng.uniform(0.0, 2.0 * np.pi, n_terms)
    phase = rng.uniform(0.0, 2.0 * np.pi, n_terms)
    amp = rng.normal(size=n_terms)
    arg = (k * np.cos(theta))[:, None, None] * xx + (k * np.sin(theta))[:, None, None] * zz + phase[:, None, None]
    out = np.tensordot(amp, np.cos(arg), axes=1)
    return (out / np.sqrt(0.5 * np.sum(amp**2) + 1e-12)).astype(np.float32)


def _correlated_normal(
    rng: np.random.Generator, shape: tuple[int, ...], sigma_axial: float, sigma_lateral: float
) -> np.ndarray:
    """Standard normal noise with a Gaussian autocorrelation, re-normalised to unit variance.

    Real speckle grains span ~2 px laterally and axially (the optical resolution is coarser than the pixel);
    white noise would look like sand.
    """
    g = rng.standard_normal(shape, dtype=np.float32)
    ndi.gaussian_filter1d(g, sigma_axial, axis=-2, output=g, truncate=2.5)
    ndi.gaussian_filter1d(g, sigma_lateral, axis=-1, output=g, truncate=2.5)
    # Variance of white noise after a 1-D Gaussian filter of width s is ~ 1 / (2 sqrt(pi) s).
    g *= np.float32(np.sqrt(4.0 * np.pi * max(sigma_axial, 0.3) * max(sigma_lateral, 0.3)))
    return g


def _linear(display: float | np.ndarray) -> np.ndarray | float:
    """Display value (0-255) to linear intensity, inverting the Spectralis ``v ** 0.25`` display."""
    return (np.asarray(display, dtype=np.float32) / 255.0) ** 4


def _steps_to_volume(
    steps: list[tuple[np.ndarray, np.ndarray | float]], base: float, height: int, smooth: bool
) -> np.ndarray:
    """Paint a piecewise-constant depth profile per A-scan from a list of (surface, new value) steps.

    Instead of comparing every pixel with every surface (one full-volume pass per surface), the value change
    at each surface is scattered into a (Z, H+1, W) delta array and integrated with one cumulative sum.
    With ``smooth`` the step is split between the two rows around a fractional surface (partial-volume
    anti-aliasing for the image); without it a row belongs to the layer whose surface lies above its centre
    (exact labels).
    """
    z_n, w_n = steps[0][0].shape
    delta = np.zeros((z_n, height + 1, w_n), dtype=np.float32)
    zi, xi = np.meshgrid(np.arange(z_n), np.arange(w_n), indexing="ij")
    prev: np.ndarray | float = base
    for surface, value in steps:
        jump = np.broadcast_to(np.asarray(value, dtype=np.float32) - np.asarray(prev, dtype=np.float32), surface.shape)
        prev = value
        if smooth:
            pos = np.clip(surface - 0.5, -1.0, height)  # row coordinate of the step, pixel centres at r
            lo = np.floor(pos)
            frac = (pos - lo).astype(np.float32)
            lo = lo.astype(np.int64) + 1  # first row fully below the step is lo + 1; row lo gets 1 - frac
            r0 = np.clip(lo, 0, height)
            r1 = np.clip(lo + 1, 0, height)
            np.add.at(delta, (zi, r0, xi), jump * (1.0 - frac))
            np.add.at(delta, (zi, r1, xi), jump * frac)
        else:
            row = np.clip(np.ceil(surface - 0.5), 0, height).astype(np.int64)
            np.add.at(delta, (zi, row, xi), jump)
    out = np.cumsum(delta[:, :height], axis=1, dtype=np.float32)
    out += np.float32(base)
    return out


# --------------------------------------------------------------------------------- grid, fovea, thicknesses


@dataclass(frozen=True, eq=False)
class _Grid:
    """Millimetre coordinates of every A-scan (origin at the volume centre) and the volume's sampling.

    Anatomy is defined in millimetres (micrometres axially), not pixels, so that it does not depend on the
    sampling and neighbouring B-scans stay coherent.
    """

    x_mm: np.ndarray  # (W,) lateral position of each column
    z_mm: np.ndarray  # (Z,) position of each B-scan
    xx: np.ndarray  # (Z, W) lateral position of each A-scan
    zz: np.ndarray  # (Z, W) B-scan position of each A-scan
    rows: np.ndarray  # (1, H, 1) row coordinate of each pixel centre
    dz: float
    dy: float
    dx: float

    @property
    def height(self) -> int:
        return self.rows.shape[1]

    @property
    def um_px(self) -> float:
        """Pixels per micrometre, axially: thicknesses are anatomical (um), surfaces are in rows."""
        return 1.0 / (self.dy * 1000.0)


def _make_grid(n_bscans: int, height: int, width: int, spacing: tuple[float, float, float]) -> _Grid:
    """The coordinates every stage shares, computed once."""
    dz, dy, dx = spacing
    x_mm = ((np.arange(width) - (width - 1) / 2.0) * dx).astype(np.float32)
    z_mm = ((np.arange(n_bscans) - (n_bscans - 1) / 2.0) * dz).astype(np.float32)
    zz, xx = np.meshgrid(z_mm, x_mm, indexing="ij")
    rows = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]
    return _Grid(x_mm=x_mm, z_mm=z_mm, xx=xx, zz=zz, rows=rows, dz=dz, dy=dy, dx=dx)


@dataclass(frozen=True, eq=False)
class _Fovea:
    """The foveal pit: its centre (mm) and the (Z, W) fields that the layer thicknesses are functions of."""

    xf: float
    zf: float
    zr: np.ndarray  # B-scan offset from the centre, mm
    r: np.ndarray  # distance from the centre, mm
    xn: np.ndarray  # lateral distance towards the nasal (optic disc) side, 0 on the temporal side, mm
    pit: np.ndarray  # 1 at the centre, falling to 0 away from it
    pit_sigma: float  # width of ``pit``, mm

    def index(self, grid: _Grid) -> tuple[float, float]:
        """The centre as fractional (B-scan index, column), as :attr:`OCTPhantom.fovea` reports it."""
        k = float((self.zf - grid.z_mm[0]) / grid.dz) if grid.z_mm.size > 1 else 0.0
        return k, float((self.xf - grid.x_mm[0]) / grid.dx)


def _draw_fovea(rng: np.random.Generator, grid: _Grid) -> _Fovea:
    """Place the pit near the volume centre (a macular scan is centred on it) and pick the eye's side."""
    half_w = max(float(grid.x_mm[-1]), 1e-6)
    half_z = float(grid.z_mm[-1])
    xf = rng.uniform(-0.15, 0.15) * 2 * half_w
    zf = rng.uniform(-1.0, 1.0) * min(half_z, 0.5)
    xr, zr = grid.xx - xf, grid.zz - zf
    r = np.sqrt(xr**2 + zr**2)
    pit_sigma = rng.uniform(0.27, 0.38)
    pit = np.exp(-(r**2) / (2 * pit_sigma**2))
    nasal = rng.choice([-1.0, 1.0])  # right or left eye: the optic disc side
    return _Fovea(xf=xf, zf=zf, zr=zr, r=r, xn=np.maximum(nasal * xr, 0.0), pit=pit, pit_sigma=pit_sigma)


def _layer_thicknesses(rng: np.random.Generator, grid: _Grid, fovea: _Fovea, fluid: bool) -> list[np.ndarray]:
    """Thickness in pixels of the seven layers RNFL..OS+RPE, each (Z, W), from the distance to the fovea.

    The inner layers vanish in the pit, INL/OPL thin to a pixel or two, the ONL peaks at the centre, GCL+IPL
    on a parafoveal ring and the RNFL thickens nasally; smooth random wobbles keep layers from looking drawn.
    With ``fluid`` INL, OPL and ONL are swollen around the fovea, as in DME.
    """
    r, pit = fovea.r, fovea.pit

    def wobble(amount: float) -> np.ndarray:
        return 1.0 + amount * _smooth_field(rng, grid.xx, grid.zz, 1.5)

    scale = rng.uniform(0.9, 1.1)
    t_rnfl = (
        (16.0 + 13.0 * np.minimum(fovea.xn, 4.5) ** 1.35 + 5.0 * np.minimum(np.abs(fovea.zr), 2.0))
        * (1.0 - pit)
        * wobble(0.12)
    )
    t_gclipl = (68.0 + 42.0 * np.exp(-((r - 0.95) ** 2) / (2 * 0.45**2))) * (1.0 - pit) * wobble(0.07)
    t_inl = (31.0 + 9.0 * np.exp(-((r - 0.85) ** 2) / (2 * 0.5**2))) * (1.0 - 0.93 * pit) * wobble(0.08) + 4.0
    t_opl = (24.0 + 5.0 * np.exp(-((r - 0.8) ** 2) / (2 * 0.5**2))) * (1.0 - 0.85 * pit) * wobble(0.1) + 5.0
    t_onl = (80.0 - 5.0 * np.minimum(r, 4.0) + 48.0 * np.exp(-(r**2) / (2 * (1.6 * fovea.pit_sigma) ** 2))) * wobble(
        0.06
    )
    t_ez = (12.0 + 3.0 * pit) * wobble(0.08)
    t_osrpe = (37.0 + 10.0 * pit) * wobble(0.06)
    if fluid:
        # Diffuse oedema: DME retinas are thicker around the fovea even outside the cysts.
        oedema = 1.0 + rng.uniform(0.0, 0.45) * np.exp(-(r**2) / (2 * rng.uniform(0.8, 1.6) ** 2))
        t_inl, t_opl, t_onl = t_inl * oedema, t_opl * oedema, t_onl * oedema
    return [
        (np.maximum(t, 0.0) * scale * grid.um_px).astype(np.float32)
        for t in (t_rnfl, t_gclipl, t_inl, t_opl, t_onl, t_ez, t_osrpe)
    ]


# --------------------------------------------------------------------------------------- intraretinal fluid


@dataclass(frozen=True)
class _Cyst:
    """One ellipsoidal cyst: the class of its host layer, its centre (mm) and semi-axes."""

    host: int
    x0: float
    z0: float
    a: float  # lateral semi-axis, mm
    b: float  # axial half-height, px
    c: float  # semi-axis across B-scans, mm


def _draw_cyst(rng: np.random.Generator, grid: _Grid, fovea: _Fovea, first: bool, k_fovea: int) -> _Cyst:
    """Draw one cyst as cystoid macular oedema places them.

    Often one large cyst under the foveal centre (ONL/Henle fibres), and smaller ones around it in INL, OPL and
    ONL; small cysts keep out of the pit, where the inner layers they would sit in have no room. The first cyst
    is centred on a B-scan (the one nearest the fovea) so that the class is always present in the volume.
    """
    central = first and rng.random() < 0.5
    host = int(rng.choice([4, 5], p=[0.3, 0.7])) if central else int(rng.choice([3, 4, 5], p=[0.45, 0.15, 0.4]))
    big = central or (host != 3 and rng.random() < 0.3)
    a = rng.uniform(0.12, 0.4) if big else rng.uniform(0.03, 0.12)
    b = (rng.uniform(35, 100) if big else rng.uniform(10, 35)) * grid.um_px
    c = max(a * rng.uniform(0.6, 1.2), 0.6 * grid.dz)
    k = k_fovea if first else int(rng.integers(grid.z_mm.size))
    z0 = grid.z_mm[k] + (0.0 if first else rng.uniform(-0.3, 0.3) * grid.dz)
    if central:
        x0 = fovea.xf + rng.normal(0.0, 0.08)
    else:
        x0 = fovea.xf + rng.choice([-1.0, 1.0]) * rng.uniform(max(0.5, a + 0.15), 1.9)
    x0 = float(np.clip(x0, grid.x_mm[0] + a, grid.x_mm[-1] - a))
    return _Cyst(host=host, x0=x0, z0=z0, a=a, b=b, c=c)


def _cyst_footprint(grid: _Grid, cyst: _Cyst) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cyst's half-height, the swelling of its host and the tissue margin kept around it, each (Z, W) px.

    Oedema swells the tissue well beyond the cyst itself: a wider, smooth dome, never lower than the cyst, so
    the cyst always fits in its swollen host layer; (1 - rho^2 / 2.2^2)^2 >= sqrt(1 - rho^2) for rho <= 1. The
    margin (4 px at the centre, >= 2.5 px at the rim, smooth to zero outside) keeps the cyst off the layer's
    boundaries without putting a step in them.
    """
    rho2 = ((grid.xx - cyst.x0) / cyst.a) ** 2 + ((grid.zz - cyst.z0) / cyst.c) ** 2
    half = cyst.b * np.sqrt(np.maximum(1.0 - rho2, 0.0))
    ra, rc = max(2.2 * cyst.a, cyst.a + 0.5), max(2.2 * cyst.c, cyst.c + 0.5)  # small cysts, broad domes
    dome_r2 = ((grid.xx - cyst.x0) / ra) ** 2 + ((grid.zz - cyst.z0) / rc) ** 2
    dome = 2.0 * cyst.b * np.maximum(1.0 - dome_r2, 0.0) ** 2
    return half, np.maximum(dome, 2.0 * half), 4.0 * np.maximum(1.0 - dome_r2, 0.0) ** 2


def _intraretinal_fluid(
    rng: np.random.Generator, grid: _Grid, fovea: _Fovea, thick_px: list[np.ndarray]
) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """Draw 1-8 cysts; return the thicknesses with the host layers swollen and, per host class, the cysts'
    half-height (px, (Z, W)) about the middle of that layer, which is where the labels put them.
    """
    cyst_half = {host: np.zeros_like(grid.xx) for host in (3, 4, 5)}
    swell = {host: np.zeros_like(grid.xx) for host in (3, 4, 5)}
    margin = {host: np.zeros_like(grid.xx) for host in (3, 4, 5)}
    n_cysts = int(rng.integers(1, 9))
    k_fovea = int(np.clip(round((fovea.zf - grid.z_mm[0]) / grid.dz), 0, grid.z_mm.size - 1))
    for i in range(n_cysts):
        cyst = _draw_cyst(rng, grid, fovea, i == 0, k_fovea)
        half, dome, rim = _cyst_footprint(grid, cyst)
        cyst_half[cyst.host] = np.maximum(cyst_half[cyst.host], half)
        swell[cyst.host] = np.maximum(swell[cyst.host], dome)
        margin[cyst.host] = np.maximum(margin[cyst.host], rim)
    thick_px = list(thick_px)
    for host in cyst_half:
        thick_px[host - 1] = thick_px[host - 1] + swell[host] + margin[host]
    return thick_px, cyst_half


# ---------------------------------------------------------------------------------- outer retinal pathology

PATHOLOGIES = ("srf", "drusen", "ped")


@dataclass(frozen=True, eq=False)
class _OuterPathology:
    """What lifts the outer retina, per A-scan in px (Z, W): subretinal fluid between the ellipsoid zone and
    the outer segments, and material between the RPE and BM (drusen: moderately bright; a serous PED: dark)."""

    srf: np.ndarray
    sub_rpe: np.ndarray
    sub_rpe_display: np.ndarray  # display value of the sub-RPE material where there is some


def _dome(grid: _Grid, x0: float, z0: float, radius: float, height_px: float, power: float) -> np.ndarray:
    """A smooth dome of the given radius (mm, round in the en-face plane) and height (px): (1 - rho^2)^power."""
    rho2 = ((grid.xx - x0) ** 2 + (grid.zz - z0) ** 2) / radius**2
    return (height_px * np.maximum(1.0 - rho2, 0.0) ** power).astype(np.float32)


def _draw_outer_pathology(
    rng: np.random.Generator, grid: _Grid, fovea: _Fovea, kinds: tuple[str, ...]
) -> _OuterPathology:
    """Draw the named outer-retinal lesions near the fovea (sizes from the clinical descriptions: SRF domes
    0.5-1.5 mm wide and up to ~250 um tall, drusen 50-200 um across and 20-90 um tall, a serous PED
    0.4-1.2 mm wide and 100-400 um tall). Each lesion crosses the B-scan nearest the fovea, so it is seen."""
    zero = np.zeros_like(grid.xx, dtype=np.float32)
    srf, sub_rpe, display = zero.copy(), zero.copy(), zero.copy()
    k_fovea = int(np.clip(round((fovea.zf - grid.z_mm[0]) / grid.dz), 0, grid.z_mm.size - 1))
    z_centre = float(grid.z_mm[k_fovea])
    if "srf" in kinds:
        radius = rng.uniform(0.5, 1.5) / 2
        x0 = fovea.xf + rng.normal(0.0, 0.2)
        srf = _dome(grid, x0, z_centre, radius, rng.uniform(40.0, 250.0) * grid.um_px, 0.75)
    if "drusen" in kinds:
        for _ in range(int(rng.integers(3, 16))):
            radius = rng.uniform(0.05, 0.2) / 2 * 2.0  # the base is wider than the visible crest
            x0 = fovea.xf + rng.uniform(-2.0, 2.0)
            z0 = z_centre + rng.uniform(-0.5, 0.5) * grid.dz
            druse = _dome(grid, x0, z0, radius, rng.uniform(20.0, 90.0) * grid.um_px, 1.0)
            display = np.where(druse > sub_rpe, np.float32(rng.uniform(100.0, 150.0)), display)
            sub_rpe = np.maximum(sub_rpe, druse)
    if "ped" in kinds:
        radius = rng.uniform(0.4, 1.2) / 2
        x0 = fovea.xf + rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 1.0)
        ped = _dome(grid, x0, z_centre, radius, rng.uniform(100.0, 400.0) * grid.um_px, 0.5)
        display = np.where(ped > sub_rpe, np.float32(rng.uniform(25.0, 50.0)), display)
        sub_rpe = np.maximum(sub_rpe, ped)
    return _OuterPathology(srf=srf, sub_rpe=sub_rpe, sub_rpe_display=display)


# ------------------------------------------------------------------------------------ BM and the boundaries


def _bm_shape(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """BM's shape up to a vertical offset (rows, (Z, W)): the eye's curvature, a tilt and slow undulations."""
    xx, zz, scale = grid.xx, grid.zz, grid.height / 496.0
    sag_px = rng.uniform(-20.0, 100.0) * scale  # bowl depth over a 4.34 mm half-width
    curv = sag_px / (4.34**2)  # px per mm^2, same along both axes: the eye is roughly a sphere
    xc, zc = rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)
    tilt_x = rng.uniform(-0.15, 0.15) / grid.dx  # px per mm: up to ~0.15 row per column, as in the Duke scans
    tilt_z = rng.uniform(-0.06, 0.06) / grid.dx
    return (
        -curv * ((xx - xc) ** 2 + (zz - zc) ** 2)
        + tilt_x * xx
        + tilt_z * zz
        + rng.uniform(1.5, 4.0) * scale * _smooth_field(rng, xx, zz, 2.5)
    )


def _place_bm(rng: np.random.Generator, grid: _Grid, shape: np.ndarray, total: np.ndarray) -> np.ndarray:
    """BM in rows: ``shape`` flattened as needed and shifted so that the retina (``total`` px thick) lies
    between a top margin of 7 % of the height and 0.86 of it, leaving room for the choroid below.

    Raises ``ValueError`` when even a flat BM cannot hold the retina.
    """
    height = grid.height
    top_margin = max(0.07 * height, 4.0)
    bottom_limit = 0.86 * height
    room = bottom_limit - top_margin
    for _ in range(3):  # shrink the bowl/tilt until the whole retina fits
        span = float(np.max(shape) - np.min(shape - total))
        if span <= room:
            break
        extent = float(np.ptp(shape))
        if extent < 1e-6:
            break
        shape = shape * max(0.0, (room - float(np.max(total)) - 1.0) / extent)
    span = float(np.max(shape) - np.min(shape - total))
    if span > room:
        raise ValueError(
            f"the retina (up to {np.max(total):.0f} px thick) does not fit in height={height} at axial "
            f"spacing {grid.dy} mm; use a larger height or a coarser axial spacing"
        )
    lo = top_margin - float(np.min(shape - total))  # smallest offset keeping ILM below the top margin
    hi = bottom_limit - float(np.max(shape))
    target = rng.uniform(0.44, 0.6) * height - float(np.mean(shape))
    return (shape + np.clip(target, lo, hi)).astype(np.float32)


def _stack_surfaces(bm: np.ndarray, thick_px: list[np.ndarray]) -> np.ndarray:
    """The eight boundaries (ILM, tops of classes 2..7, BM), (8, Z, W), stacked upwards from BM so that they are
    ordered by construction."""
    surfaces = np.empty((8, *bm.shape), dtype=np.float32)
    surfaces[7] = bm
    for layer in range(7, 0, -1):  # top of layer `layer` = bottom minus its thickness
        surfaces[layer - 1] = surfaces[layer] - thick_px[layer - 1]
    return surfaces


# --------------------------------------------------------------------------------------------------- labels


def _labels(
    grid: _Grid, surfaces: np.ndarray, cyst_half: dict[int, np.ndarray], outer: _OuterPathology | None = None
) -> np.ndarray:
    """Exact labels: a pixel belongs to the layer whose top boundary is the last one above its centre, which
    makes the layer order hold by construction; cysts (class 9) are painted over their host layer's middle,
    subretinal fluid (class 9 too) over the top of OS+RPE. Drusen and PEDs stay OS+RPE: BM lies beneath them.
    """
    labels = _steps_to_volume([(surfaces[i], float(i + 1)) for i in range(8)], 0.0, grid.height, smooth=False)
    labels = labels.astype(np.uint8)
    for host, half in cyst_half.items():
        if not np.any(half > 0):
            continue
        mid = 0.5 * (surfaces[host - 1] + surfaces[host])
        labels[np.abs(grid.rows - mid[:, None, :]) < half[:, None, :]] = 9
    if outer is not None and np.any(outer.srf > 0):
        top = surfaces[6][:, None, :]
        labels[(grid.rows > top) & (grid.rows <= top + outer.srf[:, None, :])] = 9
    return labels


# --------------------------------------------------------------------------------------------- reflectivity


def _layer_reflectivity(
    rng: np.random.Generator,
    grid: _Grid,
    surfaces: np.ndarray,
    thick_px: list[np.ndarray],
    tissue_contrast: tuple[float, float] = (0.94, 1.06),
    outer: _OuterPathology | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Anti-aliased linear reflectivity of the retina (zero above ILM and below BM), and the linear value of
    every tissue of :data:`_DISPLAY`, each display value multiplied by its own factor drawn from
    `tissue_contrast` so that volumes differ in contrast (by a few percent by default). With `outer`
    pathology, subretinal fluid (the cyst value) separates the ellipsoid zone from the outer segments and the
    sub-RPE material fills the space between the RPE band and BM.

    Sub-layers without a class of their own (GCL vs IPL, ELM, myoid zone, OS / interdigitation / RPE) give the
    layers the internal bands of real B-scans.
    """
    jitter = {k: v * rng.uniform(*tissue_contrast) for k, v in _DISPLAY.items()}
    lin = {k: float(_linear(v)) for k, v in jitter.items()}
    s, t, um_px = surfaces, thick_px, grid.um_px
    # RNFL reflectivity rises with its thickness (bundled axons), thin temporal RNFL looks greyer.
    rnfl_val = _linear(jitter["rnfl"] * (0.8 + 0.2 * np.clip(t[0] / (25.0 * um_px), 0.0, 1.0)))
    steps: list[tuple[np.ndarray, np.ndarray | float]] = [
        (s[0], rnfl_val),
        (s[1], lin["gcl"]),
        (s[1] + 0.55 * t[1], lin["ipl"]),
        (s[2], lin["inl"]),
        (s[3], lin["opl"]),
        (s[4], lin["onl"]),
        (np.maximum(s[5] - 22.0 * um_px - 1.0, s[4]), lin["elm"]),  # external limiting membrane
        (np.maximum(s[5] - 22.0 * um_px, s[4]), lin["myoid"]),
        (s[5], lin["ez"]),
    ]
    if outer is None:
        steps += _outer_bands(lin, s[6], t[6])
    else:
        top, band = s[6] + outer.srf, t[6] - outer.srf - outer.sub_rpe  # the OS+RPE band itself
        steps += [(s[6], lin["cyst"]), *_outer_bands(lin, top, band)]
        steps.append((top + band, _linear(np.where(outer.sub_rpe > 0, outer.sub_rpe_display, _DISPLAY["rpe"]))))
    steps.append((s[7], 0.0))
    return _steps_to_volume(steps, 0.0, grid.height, smooth=True), lin


def _outer_bands(
    lin: dict[str, float], top: np.ndarray, thickness: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray | float]]:
    """The bands of OS+RPE from its top: outer segments, interdigitation zone, outer segments, RPE."""
    return [
        (top, lin["os"]),
        (top + 0.3 * thickness, lin["iz"]),
        (top + 0.5 * thickness, lin["os"] * 1.1),
        (top + 0.62 * thickness, lin["rpe"]),
    ]


def _choroid_texture(
    rng: np.random.Generator, shape: tuple[int, int, int], depth: np.ndarray, ax_scale: float
) -> np.ndarray:
    """Multiplicative choroid texture: dark vessel lumens, small under BM and larger deeper, and streaks.

    The lumen fields are drawn at half resolution and upsampled, which makes them coarser at half the cost.
    """
    n_bscans, height, width = shape
    half_shape = (n_bscans, (height + 1) // 2, (width + 1) // 2)
    fine = _correlated_normal(rng, half_shape, 1.2, 2.0)
    coarse = _correlated_normal(rng, half_shape, 3.0, 5.0)
    fine = np.repeat(np.repeat(fine, 2, axis=1), 2, axis=2)[:, :height, :width]
    coarse = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)[:, :height, :width]
    w_deep = np.clip(depth / (60.0 * ax_scale), 0.0, 1.0)
    tex = (1.0 - w_deep) * fine + w_deep * coarse
    lumen = 1.0 / (1.0 + np.exp(-(tex - 0.5) * 6.0))
    streak = _correlated_normal(rng, (n_bscans, 1, width), 0.3, 2.5)
    return (1.0 - 0.7 * lumen) * np.exp(0.22 * streak)


def _add_choroid(
    rng: np.random.Generator, grid: _Grid, refl: np.ndarray, bm: np.ndarray, brightness: float
) -> np.ndarray:
    """``refl`` with everything below BM replaced by choroid: a bright choriocapillaris fading exponentially
    with depth, a faint choroid-sclera junction, and the texture of :func:`_choroid_texture`.
    """
    depth = grid.rows - 0.5 - bm[:, None, :]  # px below BM
    ax_scale = 0.00387 / grid.dy  # the numbers below are in pixels of 3.87 um
    decay_px = rng.uniform(12.0, 20.0) * ax_scale  # linear decay length: the display halves in ~50 px
    chor = brightness * (0.94 * np.exp(-depth / decay_px) + 0.06 * np.exp(-depth / (2.0 * decay_px)))
    # The choroid-sclera junction (~250 um below BM) often shows as a faint, slowly fading brighter zone.
    d_cs = rng.uniform(50.0, 80.0) * ax_scale
    past = depth - d_cs
    with np.errstate(over="ignore"):  # far above the junction exp() overflows to inf, and 1 / (1 + inf) is 0
        chor += (
            brightness
            * rng.uniform(0.005, 0.02)
            / (1.0 + np.exp(-past / 5.0))
            * np.exp(-np.maximum(past, 0.0) / (30.0 * ax_scale))
        )
    chor *= _choroid_texture(rng, refl.shape, depth, ax_scale)
    return np.where(depth > 0, chor, refl)


def _add_fluid_and_foci(
    rng: np.random.Generator, refl: np.ndarray, labels: np.ndarray, surfaces: np.ndarray, cyst_value: float
) -> None:
    """Give the cysts their value and add hyperreflective foci, in place.

    Fluid scatters little but is not black on Spectralis: Duke fluid pixels have a median display value of
    ~45 against ~57 in the tissue around them (measured with the dataset's fluid masks). Hyperreflective foci,
    common around DME cysts, are a few single bright pixels between GCL and the EZ (the blur spreads them).
    """
    n_bscans, height, width = refl.shape
    refl[labels == 9] = cyst_value
    n_foci = int(rng.poisson(12 * n_bscans))
    fz = rng.integers(0, n_bscans, n_foci)
    fx = rng.integers(0, width, n_foci)
    top, bot = surfaces[1][fz, fx] + 2.0, surfaces[5][fz, fx] - 2.0
    fy = (top + rng.random(n_foci) * np.maximum(bot - top, 0.0)).astype(np.int64)
    ok = (bot > top) & (labels[fz, np.clip(fy, 0, height - 1), fx] != 9)
    refl[fz[ok], np.clip(fy[ok], 0, height - 1), fx[ok]] = _linear(rng.uniform(170, 230, int(ok.sum())))


# ------------------------------------------------------------------------------------------ retinal vessels


@dataclass(frozen=True, eq=False)
class _Vessel:
    """A retinal vessel crossing the B-scans: its (fractional) column in each, lateral width and shadow depth."""

    xv: np.ndarray  # (Z,)
    radius: float  # Gaussian width of the vessel and its shadow, px
    strength: float  # fraction of the light the shadow removes at the vessel axis


def _draw_vessel(rng: np.random.Generator, grid: _Grid, fovea: _Fovea) -> _Vessel:
    """A vessel that drifts laterally across B-scans and keeps out of the foveal avascular zone."""
    x0 = rng.uniform(grid.x_mm[0], grid.x_mm[-1])
    if abs(x0 - fovea.xf) < 0.35:
        x0 += np.sign(x0 - fovea.xf + 1e-9) * 0.35
    slope = rng.normal(0.0, 0.4)  # lateral drift, mm per mm across B-scans
    xv = (x0 + slope * grid.zz[:, 0] - grid.x_mm[0]) / grid.dx
    return _Vessel(xv=xv, radius=rng.uniform(2.0, 5.5), strength=rng.uniform(0.4, 0.8))


def _add_vessel(
    rng: np.random.Generator,
    grid: _Grid,
    vessel: _Vessel,
    refl: np.ndarray,
    attenuation: np.ndarray,
    labels: np.ndarray,
    surfaces: np.ndarray,
    brightness: float,
) -> None:
    """Paint the vessel's bright cross-section in the inner retina into ``refl`` and multiply its shadow, which
    darkens every row beneath it, into ``attenuation``; both in place and only over the columns it touches.
    """
    width = refl.shape[2]
    xv, radius = vessel.xv, vessel.radius
    c0 = int(max(0, np.floor(xv.min() - 4 * radius)))
    c1 = int(min(width, np.ceil(xv.max() + 4 * radius) + 1))
    if c1 <= c0:  # entirely outside the volume
        return
    cols = np.arange(c0, c1, dtype=np.float32)
    prof = np.exp(-((cols[None, :] - xv[:, None]) ** 2) / (2 * radius**2))  # (Z, w)
    kz = np.arange(xv.size)
    xc_i = np.clip(np.round(xv).astype(np.int64), 0, width - 1)
    ilm = surfaces[0][kz, xc_i]
    inner = surfaces[2][kz, xc_i] - ilm  # RNFL + GCL/IPL above the vessel axis
    yv = ilm + np.clip(rng.uniform(0.15, 0.5) * inner, 2.0, 14.0)  # vessel centre row
    yv_c = np.broadcast_to(yv[:, None], prof.shape)[:, None, :]
    ry = radius * 1.3
    blob = prof[:, None, :] * np.exp(-((grid.rows - yv_c) ** 2) / (2 * ry**2))
    blob *= (labels[:, :, c0:c1] >= 1) & (labels[:, :, c0:c1] <= 3)
    refl[:, :, c0:c1] = np.maximum(refl[:, :, c0:c1], brightness * blob)
    shadow = (grid.rows > yv_c + ry) * prof[:, None, :]
    attenuation[:, :, c0:c1] *= 1.0 - vessel.strength * shadow


def _retinal_vessels(
    rng: np.random.Generator,
    grid: _Grid,
    fovea: _Fovea,
    refl: np.ndarray,
    labels: np.ndarray,
    surfaces: np.ndarray,
    brightness: float,
) -> np.ndarray:
    """Add 4-10 vessels to ``refl`` (in place) and return the attenuation of their shadows.

    The shadow is kept apart because it removes light from whatever lies beneath: it multiplies the blurred
    signal rather than being painted as tissue.
    """
    attenuation = np.ones_like(refl)
    for _ in range(int(rng.integers(4, 11))):
        _add_vessel(rng, grid, _draw_vessel(rng, grid, fovea), refl, attenuation, labels, surfaces, brightness)
    return attenuation


# ----------------------------------------------------------------------------------- optics, noise, display


def _optics_and_gain(rng: np.random.Generator, grid: _Grid, refl: np.ndarray, attenuation: np.ndarray | None) -> None:
    """Blur by the axial/lateral point-spread function, apply vessel shadows and a smooth overall gain, in place.

    The gain varies slowly across the volume and a lot between volumes, as the signal strength of scans does.
    """
    ndi.gaussian_filter1d(refl, 1.1, axis=1, output=refl, truncate=3.0)
    ndi.gaussian_filter1d(refl, 0.8, axis=2, output=refl, truncate=3.0)
    if attenuation is not None:
        refl *= attenuation
    gain = np.exp(0.45 * _smooth_field(rng, grid.xx, grid.zz, 6.0) - 0.1) * rng.uniform(0.75, 1.7)
    refl *= gain[:, None, :].astype(np.float32)


def _add_speckle(rng: np.random.Generator, refl: np.ndarray) -> None:
    """Multiply by mean-one, spatially correlated log-normal speckle, in place.

    Milder than fully developed Rayleigh speckle because Spectralis averages several frames: the display CV is
    ~0.09-0.12 in every layer, as measured.
    """
    sigma_log = rng.uniform(0.3, 0.38)
    speck = _correlated_normal(rng, refl.shape, 1.0, 0.75)
    speck *= np.float32(sigma_log)
    speck -= np.float32(0.5 * sigma_log**2)
    refl *= np.exp(speck, out=speck)


def _add_noise_floor(rng: np.random.Generator, grid: _Grid, refl: np.ndarray) -> None:
    """Add the correlated noise floor that dims with depth, in place.

    |complex Gaussian|^2 is exponential; minus an offset so that ~16 % clips to black, as in the grainy vitreous
    of the Duke PNGs. Grain size measured on Duke vitreous: lag-1 autocorrelation ~0.6 axially, ~0.45 laterally.
    """
    re = _correlated_normal(rng, refl.shape, 1.3, 1.0)
    im = _correlated_normal(rng, refl.shape, 1.3, 1.0)
    expo = 0.5 * (re * re + im * im)
    del re, im  # two full volumes fewer while the last one is made
    floor_top = rng.uniform(18.0, 34.0)
    floor_ratio = rng.uniform(0.3, 0.5)
    median_disp = floor_top * (1.0 - (1.0 - floor_ratio) * (grid.rows - 0.5) / grid.height)
    amp = _linear(median_disp) / 0.519  # median of (E - 0.174) for E ~ Exp(1) is 0.519
    refl += amp * (expo - 0.174)


def _to_display(refl: np.ndarray) -> np.ndarray:
    """Linear intensity to uint8 display values, ``255 * intensity**0.25`` as Spectralis exports; ``refl`` is
    clipped to [0, 1] and overwritten (it is the largest array in flight)."""
    np.clip(refl, 0.0, 1.0, out=refl)
    image = np.sqrt(np.sqrt(refl, out=refl), out=refl)
    image *= 255.0
    return np.rint(image).astype(np.uint8)


# -------------------------------------------------------------------------------------------------- phantom


def make_oct_phantom(
    n_bscans: int = 8,
    height: int = 496,
    width: int = 768,
    seed: int | None = 0,
    fluid: bool = True,
    *,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    vessels: bool = True,
    noise: bool = True,
    tissue_contrast: tuple[float, float] = (0.94, 1.06),
    pathology: tuple[str, ...] = (),
) -> OCTPhantom:
    """Generate a seedable synthetic macular OCT volume (see the module docstring for the model).

    ``seed`` fixes everything (same seed, same arrays); ``None`` draws a fresh volume. ``fluid`` adds 1-8
    intraretinal cysts (class 9) near the fovea, at least one of them crossing a B-scan. ``vessels`` adds
    retinal vessels with their shadows; ``noise=False`` gives the noiseless, blurred reflectivity (handy to
    see the anatomy). ``tissue_contrast`` is the range of the factor each tissue's display value is multiplied
    by; a wide range (e.g. 0.75-1.25) makes layers differ in contrast as they do between devices and eyes, so
    a model cannot learn one device's layer brightnesses as anatomy. ``spacing`` is (between B-scans, axial,
    lateral) in mm; thicknesses are anatomical, so a coarser axial spacing gives a thinner retina in pixels.
    ``pathology`` adds outer-retinal lesions, any of :data:`PATHOLOGIES`: "srf" (subretinal fluid, labelled
    fluid), "drusen" and "ped" (material between RPE and BM, labelled OS+RPE, so BM stays beneath); they are
    drawn from a generator of their own, so a seed without pathology gives the same volume as before.
    Raises ``ValueError`` when the retina cannot fit.
    """
    if n_bscans < 1 or height < 16 or width < 8:
        raise ValueError(f"volume too small: n_bscans={n_bscans}, height={height}, width={width}")
    dz, dy, dx = (float(s) for s in spacing)
    if min(dz, dy, dx) <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    unknown = sorted(set(pathology) - set(PATHOLOGIES))
    if unknown:
        raise ValueError(f"unknown pathology {', '.join(unknown)}; known: {', '.join(PATHOLOGIES)}")
    # The stages draw from one generator in a fixed order: reordering them changes every seeded volume.
    rng = np.random.default_rng(seed)
    grid = _make_grid(n_bscans, height, width, (dz, dy, dx))
    fovea = _draw_fovea(rng, grid)
    thick_px = _layer_thicknesses(rng, grid, fovea, fluid)
    cyst_half: dict[int, np.ndarray] = {}
    if fluid:
        thick_px, cyst_half = _intraretinal_fluid(rng, grid, fovea, thick_px)
    outer = None
    if pathology:
        lesions = np.random.default_rng(None if seed is None else [seed, 1])
        outer = _draw_outer_pathology(lesions, grid, fovea, pathology)
        thick_px = [*thick_px[:6], thick_px[6] + outer.srf + outer.sub_rpe]
    shape = _bm_shape(rng, grid)
    bm = _place_bm(rng, grid, shape, np.sum(thick_px, axis=0))
    surfaces = _stack_surfaces(bm, thick_px)
    labels = _labels(grid, surfaces, cyst_half, outer)
    refl, lin = _layer_reflectivity(rng, grid, surfaces, thick_px, tissue_contrast, outer)
    refl = _add_choroid(rng, grid, refl, bm, lin["choroid"])
    if fluid:
        _add_fluid_and_foci(rng, refl, labels, surfaces, lin["cyst"])
    attenuation = _retinal_vessels(rng, grid, fovea, refl, labels, surfaces, lin["vessel"]) if vessels else None
    _optics_and_gain(rng, grid, refl, attenuation)
    if noise:
        _add_speckle(rng, refl)
        _add_noise_floor(rng, grid, refl)
    return OCTPhantom(
        image=_to_display(refl), labels=labels, spacing=(dz, dy, dx), surfaces=surfaces, fovea=fovea.index(grid)
    )
