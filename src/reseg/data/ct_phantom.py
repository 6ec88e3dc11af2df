"""Synthetic abdominal CT stacks (axial slices, Hounsfield units) with exact organ labels.

The phantom exists for the same reasons as the OCT one: tests, sample data and demonstrations need a CT
stack whose labels are known exactly and that ships with the package, while the only real CT we may use
(the TotalSegmentator test files) lives outside the repository and carries model output, not expert labels.
It should look enough like an abdominal CT that the bundled CT model and a reviewer are not surprised.

Conventions (those of the project's volume reader, checked on the real ``example_ct_sm.nii.gz``): the stack
is (Z, Y, X) with z increasing towards the head, rows (Y) increasing from posterior to anterior, and columns
(X) such that the liver lies at ~0.66 of the width and the spleen at ~0.18 - i.e. the patient's right is at
high column indices in this data. Everything below is written in millimetre coordinates ``u`` (towards the
higher column, the patient's right here), ``v`` (anterior) and ``z`` (superior), origin at the volume centre.

How a stack is made, in order (every step vectorised over the whole volume):

1. Body: a superellipse (the abdomen is flatter than an ellipse at the back and flanks) whose size varies
   a little along z. The in-plane distance to the skin splits it into subcutaneous fat, the muscular
   abdominal wall and the peritoneal cavity. A body too big for the field of view is scaled down, organ
   sizes with it, so small test stacks still show an abdomen.
2. Background anatomy without a class: visceral fat with mottled mesentery and collapsed bowel, colon with
   gas and stool, the duodenum, paraspinal and psoas muscles, the vertebral column (cortical shell,
   cancellous bone, intervertebral discs, spinal canal, posterior arch), ribs in the wall, lung bases in the
   upper slices and the inferior vena cava. They matter: without them a model could find an organ by being
   the only soft tissue in the slice.
3. Organs, painted in an order that mimics who displaces whom (later wins): liver, spleen, kidneys, stomach,
   gallbladder, pancreas, then IVC, aorta, spine, ribs and lung bases. Each organ is an ellipsoid or a
   tube along a 3-D polyline, so its cross-section grows and shrinks smoothly and it appears and disappears
   along z like real anatomy; the outline gets random low-order harmonics that vary with z. Organs are
   confined to the peritoneal cavity, so labels never leave the body. Positions are fractions of the body's
   semi-axes measured on the real scan (liver centroid at +0.40 a, +0.17 b from the body centre, spleen at
   -0.63 a, -0.28 b, kidneys at +-0.41 a, -0.27 b, ...); z extents follow the same scan (kidneys and
   gallbladder in the lower slices, liver and spleen growing upwards, lung bases at the top).
4. Labels are the painted organ masks themselves, so they are exact; the image gets the same masks' HU.
5. Image: a sub-pixel Gaussian blur (partial volume at 3 mm) and CT noise: Gaussian, 10-15 HU, slightly
   correlated in-plane as after a standard reconstruction kernel; rounded to int16 and clipped to the
   scanner range.

HU values: ``contrast=True`` (default) is a mildly enhanced scan as in the Synapse benchmark (aorta
~180 HU, kidney cortex brighter than the medulla); ``contrast=False`` uses the non-enhanced values measured
inside the organs of the real TotalSegmentator example (liver ~47, spleen ~35, aorta ~42, gallbladder ~4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["CTPhantom", "make_ct_phantom"]

# Class indices of reseg.classes.CT_CLASSES (kept literal here: the phantom defines the anatomy, the class
# table only names it; tests check both agree).
AORTA, GALLBLADDER, LEFT_KIDNEY, RIGHT_KIDNEY, LIVER, PANCREAS, SPLEEN, STOMACH = 1, 2, 3, 4, 5, 6, 7, 8

# Mean HU of every tissue. Non-enhanced values are medians inside the (eroded) TotalSegmentator labels of
# the real example (liver 47, spleen 35, aorta/IVC 42, gallbladder 4, muscle 25-40, fat -96, lung -800) or,
# where partial volume spoils that measurement (kidneys 14-20 with sinus fat, a fatty pancreas 5-8),
# textbook non-enhanced values. The enhanced set is a moderate portal-venous-like phase.
_HU_PLAIN = {
    "air": -1000.0,
    "fat": -100.0,
    "visceral_fat": -92.0,
    "muscle": 45.0,
    "back_muscle": 32.0,
    "bowel": 28.0,
    "bowel_wall": 38.0,
    "fluid": 12.0,
    "gas": -900.0,
    "stool": -120.0,
    "liver": 50.0,
    "spleen": 40.0,
    "kidney_cortex": 32.0,
    "kidney_medulla": 26.0,
    "sinus": -60.0,
    "gallbladder": 6.0,
    "pancreas": 32.0,
    "stomach_wall": 38.0,
    "aorta": 42.0,
    "vein": 40.0,
    "cancellous": 220.0,
    "cortical": 650.0,
    "disc": 85.0,
    "canal": 18.0,
    "rib": 420.0,
    "lung": -830.0,
}
_HU_ENHANCED = dict(
    _HU_PLAIN,
    liver=60.0,
    spleen=50.0,
    kidney_cortex=120.0,
    kidney_medulla=32.0,
    gallbladder=10.0,
    pancreas=42.0,
    stomach_wall=48.0,
    aorta=180.0,
    vein=125.0,
    bowel_wall=50.0,
)
_HU_MIN, _HU_MAX = -1024, 3071  # the range of a 12-bit CT scanner

# Real body half-width (mm) of the TotalSegmentator example: organ sizes below are in mm for this body.
_REF_HALF_WIDTH = 172.0


@dataclass
class CTPhantom:
    """A synthetic abdominal CT stack with its exact labels.

    ``image`` is int16 Hounsfield units (Z, Y, X), axial slices from inferior to superior; ``labels`` is uint8
    in the 9-class convention of :data:`reseg.classes.CT_CLASSES`; ``spacing`` is (z, y, x) in mm. ``body``
    is the boolean body mask (everything that is not air around the patient), ground truth for tests.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0)
    body: np.ndarray | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------- helpers


def _correlated_normal(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> np.ndarray:
    """Standard normal noise correlated in-plane only (each slice is reconstructed on its own).

    A reconstruction kernel makes CT noise slightly blotchy over ~1-2 pixels; white noise would look too fine.
    """
    g = rng.standard_normal(shape, dtype=np.float32)
    ndi.gaussian_filter1d(g, sigma_px, axis=-1, output=g, truncate=3.0)
    ndi.gaussian_filter1d(g, sigma_px, axis=-2, output=g, truncate=3.0)
    return g * np.float32(np.sqrt(4.0 * np.pi) * sigma_px)  # unit variance again: 1 / (2 sqrt(pi) s) per axis


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: tuple[float, float, float]) -> np.ndarray:
    """A smooth random 3-D field with unit standard deviation (mesentery, stool, bone texture)."""
    g = rng.standard_normal(shape, dtype=np.float32)
    ndi.gaussian_filter(g, sigma_px, output=g, truncate=2.5)
    return g / np.float32(max(float(g.std()), 1e-6))


class _Harmonics:
    """A random outline perturbation: low-order angular harmonics whose phases drift slowly along z.

    Real organs are not ellipses; orders 2-4 dent and bulge the outline, and the drift keeps neighbouring
    slices coherent while the shape still changes over a few centimetres.
    """

    def __init__(self, rng: np.random.Generator, amplitude: float, orders: tuple[int, ...] = (2, 3, 4)):
        self.orders = orders
        self.amp = (amplitude * rng.normal(size=len(orders)) / np.asarray(orders) ** 0.5).astype(np.float32)
        self.phase = rng.uniform(0, 2 * np.pi, len(orders)).astype(np.float32)
        self.drift = rng.normal(0.0, 1.0 / 40.0, len(orders)).astype(np.float32)  # rad per mm of z

    def __call__(self, theta: np.ndarray, z: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast_shapes(theta.shape, z.shape), dtype=np.float32)
        for k, a, p, w in zip(self.orders, self.amp, self.phase, self.drift, strict=True):
            out += a * np.cos(k * theta + p + w * z)
        return out


def _ellipsoid(
    u: np.ndarray,
    v: np.ndarray,
    z: np.ndarray,
    centre: tuple[float, float, float],
    semi: tuple[float, float, float],
    angle: float = 0.0,
    slope: tuple[float, float] = (0.0, 0.0),
    outline: _Harmonics | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius of an ellipsoid (inside where < 1), and the in-plane polar angle in its frame.

    ``semi`` = (along the rotated u axis, along the rotated v axis, along z) in mm; ``angle`` rotates the
    cross-section in-plane; ``slope`` moves the centre along z (mm of u, v per mm of z), as organs do not lie
    straight along the scanner axis. With ``outline`` the radius is divided by (1 + harmonics), so the
    boundary ``< 1`` is dented and bulged. The perturbation applies to the cross-section only, so a slice near
    a pole shows a smaller copy of the same outline rather than splinters.
    """
    cu, cv, cz = centre
    dz = z - np.float32(cz)
    x = u - (cu + slope[0] * dz)
    y = v - (cv + slope[1] * dz)
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    xr = (x * ca + y * sa) / np.float32(semi[0])
    yr = (y * ca - x * sa) / np.float32(semi[1])
    in_plane = np.sqrt(xr * xr + yr * yr)
    theta = np.arctan2(yr, xr)
    if outline is not None:
        in_plane /= np.maximum(1.0 + outline(theta, z), 0.5)
    return np.sqrt(in_plane * in_plane + (dz / np.float32(semi[2])) ** 2), theta


def _tube(
    u: np.ndarray, v: np.ndarray, z: np.ndarray, points: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tube of varying radius along a 3-D polyline (stomach, pancreas, bowel, vessels).

    Returns, for every voxel, the distance to the polyline divided by the local radius (inside where < 1),
    and the v coordinate and radius of the nearest point on the polyline (to place an air-fluid level).
    Each segment is a capsule whose radius varies linearly from one end to the other.
    """
    shape = np.broadcast_shapes(u.shape, v.shape, z.shape)
    best = np.full(shape, np.inf, dtype=np.float32)
    near_v = np.zeros(shape, dtype=np.float32)
    near_r = np.ones(shape, dtype=np.float32)
    for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
        d = (p1 - p0).astype(np.float32)
        length2 = max(float(d @ d), 1e-6)
        t = ((u - p0[0]) * d[0] + (v - p0[1]) * d[1] + (z - p0[2]) * d[2]) / np.float32(length2)
        np.clip(t, 0.0, 1.0, out=t)
        pv = p0[1] + t * d[1]
        dist = np.sqrt((u - (p0[0] + t * d[0])) ** 2 + (v - pv) ** 2 + (z - (p0[2] + t * d[2])) ** 2)
        r = np.float32(r0) + t * np.float32(r1 - r0)
        q = dist / r
        closer = q < best
        best = np.where(closer, q, best)
        near_v = np.where(closer, pv, near_v)
        near_r = np.where(closer, r, near_r)
    return best, near_v, near_r


# ------------------------------------------------------------------------------------------------ stages


@dataclass
class _Body:
    """The patient's geometry, drawn once and shared so that every stage places its anatomy on the same body.

    ``u``, ``v``, ``z`` are broadcastable anatomical-mm coordinates (see the module docstring); ``uc``, ``vc``
    the body centre, ``a``, ``b`` its semi-axes, ``p`` the superellipse exponent, ``widen`` its growth along z
    and ``g`` the organ size scale of this body. ``mask`` is the body, ``depth`` the in-plane distance to the
    skin, ``fat_t`` and ``wall_t`` the subcutaneous fat and muscular wall thickness; ``cavity`` is the inside of
    the wall and ``organ_room`` the part organs may fill. ``texture`` (smooth) and ``fine`` (speckle) are the
    shared random textures, so mesentery, stool and parenchyma vary together.
    """

    shape: tuple[int, int, int]
    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    uc: float
    vc: float
    a: float
    b: float
    p: float
    widen: np.ndarray
    g: float
    mask: np.ndarray
    depth: np.ndarray
    fat_t: np.ndarray
    wall_t: np.ndarray
    cavity: np.ndarray
    organ_room: np.ndarray
    texture: np.ndarray
    fine: np.ndarray

    def points(self, *rows: tuple[float, float, float]) -> np.ndarray:
        """Polyline vertices given as fractions of the semi-axes from the body centre (u, v) and mm of z."""
        return np.asarray([(self.uc + fu * self.a, self.vc + fv * self.b, fz) for fu, fv, fz in rows], dtype=np.float32)

    def ellipsoid(
        self,
        centre: tuple[float, float, float],
        semi: tuple[float, float, float],
        angle: float = 0.0,
        slope: tuple[float, float] = (0.0, 0.0),
        outline: _Harmonics | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_ellipsoid` on this body's coordinates."""
        return _ellipsoid(self.u, self.v, self.z, centre, semi, angle, slope, outline)

    def tube(self, points: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`_tube` on this body's coordinates."""
        return _tube(self.u, self.v, self.z, points, radii)


@dataclass
class _Spine:
    """Where the vertebral column lies: muscles, kidneys, vessels and lungs are placed relative to it.

    ``u`` is its centre column and ``v0`` its centre row at z = 0 (mm); ``v`` (Z, 1, 1) the centre row per slice,
    which moves posteriorly going up; ``a``, ``b`` the vertebral body's semi-axes; ``canal_v`` the spinal canal.
    """

    u: float
    v0: float
    v: np.ndarray
    a: float
    b: float
    canal_v: np.ndarray


class _Canvas:
    """The HU image and the label map being painted together, so that a voxel's label is always its tissue's.

    Every paint overwrites what lies under it: later wins, which is how organs displace their neighbours.
    """

    def __init__(self, shape: tuple[int, int, int], background: float):
        self.shape = shape
        self.image = np.full(shape, background, dtype=np.float32)
        self.labels = np.zeros(shape, dtype=np.uint8)

    def paint(self, mask: np.ndarray, value: float | np.floating | np.ndarray, label: int = 0) -> None:
        """Set ``value`` (HU, scalar or broadcastable) and ``label`` where ``mask``; 0 is tissue without a class."""
        mask = np.broadcast_to(mask, self.shape)
        self.image[mask] = np.broadcast_to(np.asarray(value, dtype=np.float32), self.shape)[mask]
        self.labels[mask] = label


def _jitter(rng: np.random.Generator, scale: float) -> float:
    """A uniform offset in [-scale, scale]: positions vary between patients around the measured mean."""
    return rng.uniform(-1.0, 1.0) * scale


def _organ_size(rng: np.random.Generator, g: float) -> float:
    """An organ's size scale: the body's, +-12 %, as organs vary between patients more than bodies do."""
    return g * rng.uniform(0.88, 1.12)


def _tissue_hu(rng: np.random.Generator, contrast: bool) -> dict[str, float]:
    """This scan's mean HU per tissue: patients and scanners differ by a few HU around the table values."""
    return {k: val + rng.normal(0.0, 3.0) for k, val in (_HU_ENHANCED if contrast else _HU_PLAIN).items()}


def _make_body(rng: np.random.Generator, n_slices: int, size: int, d: float) -> _Body:
    """Draw the body, scaled to fit the field of view, its wall layers and the shared textures."""
    f32 = np.float32
    a = rng.uniform(150.0, 180.0)  # half-width, mm (the real example: 172)
    b = a * rng.uniform(0.72, 0.82)  # half-depth (real: 0.78 a)
    fov = size * d
    # A field of view too small for an adult gets a proportionally smaller patient: everything is built in
    # anatomical millimetres, which are `fit` physical millimetres.
    fit = min(1.0, 0.9 * fov / (2 * a), 0.9 * fov / (2 * b))
    da = d / fit  # voxel size in anatomical mm
    g = a / _REF_HALF_WIDTH  # organ size scale relative to the real body
    centred = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) * f32(da)
    z = (np.arange(n_slices, dtype=np.float32) - (n_slices - 1) / 2.0) * f32(da) + f32(rng.uniform(-6, 6))
    z = z[:, None, None]
    v = centred[None, :, None]
    u = centred[None, None, :]

    uc, vc = rng.uniform(-5, 5), rng.uniform(-5, 5)
    p = rng.uniform(2.2, 2.8)
    widen = 1.0 + 0.0008 * z  # the lower chest is a little wider than the abdomen
    bu = np.abs((u - uc) / (a * widen))
    bv = np.abs((v - vc) / (b * widen))
    mask = (bu**p + bv**p) < 1.0
    depth = ndi.distance_transform_edt(mask, sampling=(1e6, da, da)).astype(np.float32)  # in-plane, mm
    theta_body = np.arctan2(v - vc, u - uc)  # (1, Y, X)
    fat_t = rng.uniform(6.0, 22.0) * g * (1.0 + _Harmonics(rng, 0.35, (1, 2, 3))(theta_body, z))
    fat_t = np.maximum(fat_t, 2.5)
    wall_t = rng.uniform(7.0, 12.0) * g * (1.0 + _Harmonics(rng, 0.2, (2, 3))(theta_body, z))
    cavity = depth > fat_t + wall_t  # inside the abdominal wall
    # Organs keep a millimetre or two off the wall (peritoneum, partial volume of the ring).
    organ_room = depth > fat_t + wall_t + 1.5

    shape = (n_slices, size, size)
    texture = _smooth_field(rng, shape, (0.8, 1.6, 1.6))
    fine = _correlated_normal(rng, shape, 0.9)
    return _Body(
        shape=shape,
        u=u,
        v=v,
        z=z,
        uc=uc,
        vc=vc,
        a=a,
        b=b,
        p=p,
        widen=widen,
        g=g,
        mask=mask,
        depth=depth,
        fat_t=fat_t,
        wall_t=wall_t,
        cavity=cavity,
        organ_room=organ_room,
        texture=texture,
        fine=fine,
    )


def _paint_wall_and_filler(canvas: _Canvas, body: _Body, hu: dict[str, float]) -> None:
    """Fat, muscular wall and a cavity of visceral fat, mesentery and collapsed bowel: no organ sits in a void."""
    canvas.paint(body.mask, hu["fat"])
    canvas.paint(body.mask & (body.depth > body.fat_t), hu["muscle"])
    loops = 1.0 / (1.0 + np.exp(-(body.texture - 0.35) * 5.0))
    canvas.paint(body.cavity, hu["visceral_fat"] + (hu["bowel"] - hu["visceral_fat"]) * loops)
    # A few gas bubbles; gas floats anteriorly (supine).
    bubbles = body.cavity & (body.texture > 1.6) & (body.fine > 0.8) & (body.v - body.vc > 0)
    canvas.paint(bubbles, hu["gas"])


def _place_spine(rng: np.random.Generator, body: _Body) -> _Spine:
    """Draw the vertebral column's position, needed by the muscles and vessels before the bone is painted.

    It moves posteriorly going up (lumbar lordosis into the thoracolumbar junction): on the real scan its
    centre is at -0.25 b at L2 and -0.42 b at T12, 6 cm higher.
    """
    g, b = body.g, body.b
    u = body.uc + rng.uniform(-3, 3) * g
    v0 = body.vc + b * rng.uniform(-0.36, -0.30)
    v = v0 - b * 0.0028 * body.z  # (Z,1,1)
    semi_a, semi_b = 20.0 * g * rng.uniform(0.9, 1.1), 15.0 * g * rng.uniform(0.9, 1.1)
    return _Spine(u=u, v0=v0, v=v, a=semi_a, b=semi_b, canal_v=v - semi_b - 10.0 * g)


def _paint_spine_muscles(
    canvas: _Canvas, rng: np.random.Generator, body: _Body, spine: _Spine, hu: dict[str, float]
) -> None:
    """Paraspinal muscles behind the spine and the psoas beside it: soft tissue a kidney must not be confused with.

    The psoas grows going down from about the level of the renal hila.
    """
    a, b, g = body.a, body.b, body.g
    for side in (-1.0, 1.0):
        back, _ = body.ellipsoid(
            (spine.u + side * 0.24 * a, body.vc - 0.70 * b, 0.0), (38.0 * g, 24.0 * g, 1e6), angle=side * 0.25
        )
        canvas.paint(body.mask & (back < 1.0) & (body.depth > body.fat_t), hu["back_muscle"])
        psoas_grow = np.clip((rng.uniform(0, 15) - body.z) / 45.0, 0.0, 1.0) ** 0.5
        psoas, _ = body.ellipsoid((spine.u + side * 0.20 * a, spine.v0 - 2.0, 0.0), (11.0 * g, 13.0 * g, 1e6))
        canvas.paint(body.cavity & (psoas < psoas_grow), hu["muscle"])


def _paint_gut(
    canvas: _Canvas,
    body: _Body,
    hu: dict[str, float],
    points: np.ndarray,
    radii: np.ndarray,
    gas_fill: float,
    stool: bool,
) -> None:
    """One gut tube: a wall around stool or fluid, with gas above a horizontal air-fluid level (supine)."""
    q, near_v, near_r = body.tube(points, radii)
    inside = body.cavity & (q < 1.0)
    lumen_r = np.maximum(near_r - 3.5, 0.5)
    wall = inside & (q * near_r > lumen_r)
    lumen = inside & ~wall
    content = hu["stool"] + 90.0 * body.texture + 60.0 * body.fine if stool else np.float32(hu["fluid"])
    canvas.paint(lumen, content)
    level = near_v + lumen_r * (1.0 - 2.0 * gas_fill)
    canvas.paint(lumen & (body.v > level), hu["gas"])
    canvas.paint(wall, hu["bowel_wall"])


def _paint_bowel(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """Colon (gas and stool) and duodenum (fluid), without a class: gut that lies against the organs."""
    hepatic_flexure = rng.uniform(-25, 5)
    splenic_flexure = rng.uniform(10, 40)
    colon_r = rng.uniform(14.0, 22.0) * body.g
    colon = body.points(
        (0.55, 0.15, -120),
        (0.55, 0.25, hepatic_flexure),
        (0.25, 0.62, hepatic_flexure + 8),
        (-0.25, 0.62, hepatic_flexure + 12),
        (-0.55, 0.30, splenic_flexure),
        (-0.62, 0.05, -120),
    )
    _paint_gut(canvas, body, hu, colon, np.full(6, colon_r, dtype=np.float32), rng.uniform(0.2, 0.8), stool=True)
    duodenum = body.points((0.33, 0.12, -70), (0.30, 0.20, -10), (0.12, 0.32, 5))
    _paint_gut(
        canvas,
        body,
        hu,
        duodenum,
        np.asarray([12, 12, 9], dtype=np.float32) * body.g,
        rng.uniform(0.0, 0.6),
        stool=False,
    )


def _paint_liver(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """The liver: a big right lobe against the right wall and a left lobe crossing the midline anteriorly.

    Both grow going up (real: 320 px at the bottom of the example to 2080 px at the top).
    """
    a, b, uc, vc = body.a, body.b, body.uc, body.vc
    s = _organ_size(rng, body.g)
    z_liver = rng.uniform(38, 50)
    right, _ = body.ellipsoid(
        (uc + (0.43 + _jitter(rng, 0.04)) * a, vc + (0.12 + _jitter(rng, 0.05)) * b, z_liver),
        (80.0 * s, 97.0 * s, rng.uniform(85, 100)),
        angle=_jitter(rng, 0.2),
        slope=(-0.3, 0.1),
        outline=_Harmonics(rng, 0.08),
    )
    left, _ = body.ellipsoid(
        (uc + (-0.05 + _jitter(rng, 0.06)) * a, vc + (0.45 + _jitter(rng, 0.04)) * b, z_liver + rng.uniform(0, 15)),
        (65.0 * s, 28.0 * s, rng.uniform(40, 52)),
        angle=0.3 + _jitter(rng, 0.15),
        outline=_Harmonics(rng, 0.08),
    )
    liver = body.organ_room & ((right < 1.0) | (left < 1.0))
    canvas.paint(liver, hu["liver"] + 4.0 * body.texture, LIVER)  # mild heterogeneity (vessels, perfusion)


def _paint_spleen(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """The spleen: a crescent against the left posterolateral wall, long axis tangent to it, concave hilum."""
    uc, vc = body.uc, body.vc
    s = _organ_size(rng, body.g)
    spu, spv = uc + (-0.62 + _jitter(rng, 0.04)) * body.a, vc + (-0.25 + _jitter(rng, 0.05)) * body.b
    tangent = np.arctan2(spv - vc, spu - uc) + np.pi / 2
    z_spleen, c_spleen = rng.uniform(25, 40), rng.uniform(55, 70)
    spleen, _ = body.ellipsoid(
        (spu, spv, z_spleen),
        (58.0 * s, 27.0 * s, c_spleen),
        angle=tangent,
        slope=(0.1, 0.15),
        outline=_Harmonics(rng, 0.06),
    )
    # The hilum notch is a smaller ellipsoid on the medial side with the same z extent: it shrinks with the
    # spleen towards the poles instead of cutting the tip into pieces.
    inward = np.asarray([uc - spu, vc - spv]) / np.hypot(uc - spu, vc - spv)
    hilum, _ = body.ellipsoid(
        (spu + 24.0 * s * inward[0], spv + 24.0 * s * inward[1], z_spleen),
        (30.0 * s, 12.0 * s, c_spleen),
        angle=tangent,
        slope=(0.1, 0.15),
    )
    canvas.paint(body.organ_room & (spleen < 1.0) & (hilum > 1.0), hu["spleen"] + 3.0 * body.texture, SPLEEN)


def _paint_kidneys(canvas: _Canvas, rng: np.random.Generator, body: _Body, spine: _Spine, hu: dict[str, float]) -> None:
    """Kidneys either side of the spine, hilum anteromedial, cortex around medulla, renal sinus fat unlabelled.

    The right one sits lower (under the liver), as on the real scan (right kidney ends 12 mm below the left).
    """
    z_right = rng.uniform(-50, -35)
    for side, label, zk in ((1.0, RIGHT_KIDNEY, z_right), (-1.0, LEFT_KIDNEY, z_right + rng.uniform(8, 20))):
        s = _organ_size(rng, body.g)
        ku, kv = spine.u + side * (0.41 + _jitter(rng, 0.03)) * body.a, body.vc + (-0.27 + _jitter(rng, 0.04)) * body.b
        angle = np.arctan2(1.0, side) + _jitter(rng, 0.2)  # long axis from posteromedial to anterolateral
        kidney_rho, _ = body.ellipsoid(
            (ku, kv, zk),
            (33.0 * s, 24.0 * s, rng.uniform(50, 58)),
            angle=angle,
            slope=(-side * 0.15, -0.1),
            outline=_Harmonics(rng, 0.04),
        )
        hilum_dir = np.arctan2(1.0, -side)  # anteromedial
        sinus, _ = body.ellipsoid(
            (ku + 16.0 * s * np.cos(hilum_dir), kv + 16.0 * s * np.sin(hilum_dir), zk),
            (13.0 * s, 9.0 * s, 38.0),
            angle=hilum_dir,
        )
        kidney = body.organ_room & (kidney_rho < 1.0)
        canvas.paint(kidney, np.where(kidney_rho > 0.72, hu["kidney_cortex"], hu["kidney_medulla"]), label)
        canvas.paint(kidney & (sinus < 1.0), hu["sinus"])  # renal sinus fat: not kidney, the hilum notch


def _paint_stomach(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """The stomach: a curved tube from the fundus to the pylorus, with wall, food and fluid and a gas cap.

    The fundus is high and posterior under the spleen's dome, the antrum and pylorus low and anterior,
    crossing to the right. Wall, gas and contents are all stomach.
    """
    s = _organ_size(rng, body.g) * rng.uniform(0.65, 1.0)
    zs = rng.uniform(-8, 8)
    points = body.points(
        (-0.45 + _jitter(rng, 0.04), -0.02, 70 + zs),
        (-0.36 + _jitter(rng, 0.04), 0.28, 25 + zs),
        (-0.08 + _jitter(rng, 0.04), 0.48, -8 + zs),
        (0.18 + _jitter(rng, 0.04), 0.38, -22 + zs),
    )
    q, near_v, near_r = body.tube(points, np.asarray([42, 34, 24, 14], dtype=np.float32) * s)
    stomach = body.organ_room & (q < 1.0)
    canvas.paint(stomach, hu["fluid"] + 15.0 * np.clip(body.texture, -1, 2), STOMACH)  # fluid mixed with food
    lumen_r = np.maximum(near_r - 4.5, 0.5)  # the gas cap is measured inside the wall
    gas = stomach & (body.v > near_v + lumen_r * (1.0 - 2.0 * rng.uniform(0.08, 0.4)))
    canvas.paint(gas, hu["gas"], STOMACH)
    canvas.paint(stomach & (q * near_r > lumen_r), hu["stomach_wall"], STOMACH)


def _paint_gallbladder(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """The gallbladder: a pear under the liver's inferior surface, anterior and medial in the right lobe."""
    s = _organ_size(rng, body.g)
    gb, _ = body.ellipsoid(
        (
            body.uc + (0.38 + _jitter(rng, 0.05)) * body.a,
            body.vc + (0.38 + _jitter(rng, 0.05)) * body.b,
            rng.uniform(-25, -8),
        ),
        (15.0 * s, 22.0 * s, rng.uniform(22, 30)),
        angle=_jitter(rng, 0.5),
        slope=(0.1, 0.2),
        outline=_Harmonics(rng, 0.05),
    )
    canvas.paint(body.organ_room & (gb < 1.0), hu["gallbladder"], GALLBLADDER)


def _paint_pancreas(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """The pancreas, thin and oblique, with the splenic vein along its back (unlabelled, as in the real labels).

    Head by the duodenum (low, right), neck in front of the aorta, tail up to the splenic hilum (high, left,
    posterior).
    """
    s = _organ_size(rng, body.g)
    zp = rng.uniform(-14, 0)
    points = body.points(
        (0.22 + _jitter(rng, 0.03), 0.12, zp - 22),
        (0.03, 0.26 + _jitter(rng, 0.04), zp - 8),
        (-0.25, 0.20 + _jitter(rng, 0.04), zp),
        (-0.50 + _jitter(rng, 0.04), -0.05, zp + 12),
    )
    q, _, _ = body.tube(points, np.asarray([13, 9, 9, 7], dtype=np.float32) * s)
    canvas.paint(body.organ_room & (q < 1.0), hu["pancreas"] + 6.0 * body.fine, PANCREAS)
    q, _, _ = body.tube(
        points[1:] + np.asarray([0, -10.0 * s, 3], dtype=np.float32), np.full(3, 4.0 * body.g, dtype=np.float32)
    )
    canvas.paint(body.cavity & (q < 1.0), hu["vein"])


def _paint_vessels(canvas: _Canvas, rng: np.random.Generator, body: _Body, spine: _Spine, hu: dict[str, float]) -> None:
    """The IVC (no class) and the aorta, both following the spine; painted over the organs they run through.

    The IVC lies right of the aorta, flattened, embedded in the liver higher up. The aorta is round, just
    anterior and to the patient's left of the vertebral body, a little wider going up (real: 27 px at the
    bottom of the example, 44 at the top).
    """
    a, b, g, u, v, z = body.a, body.b, body.g, body.u, body.v, body.z
    ivc, _ = body.ellipsoid((spine.u + 0.11 * a, body.vc + 0.06 * b, 0.0), (14.0 * g, 10.0 * g, 1e6), slope=(0.0, -0.1))
    canvas.paint(body.cavity & (ivc < 1.0), hu["vein"])
    r_ao = rng.uniform(9.0, 12.0) * g * (1.0 + 0.003 * np.clip(z, -60, 60))
    ao_u = spine.u - 0.07 * a + _jitter(rng, 3.0)
    ao_v = spine.v + spine.b + r_ao + rng.uniform(2.0, 7.0)
    aorta = ((u - ao_u) ** 2 + (v - ao_v) ** 2) < r_ao**2
    canvas.paint(aorta & body.cavity, hu["aorta"], AORTA)


def _paint_vertebrae(
    canvas: _Canvas, rng: np.random.Generator, body: _Body, spine: _Spine, hu: dict[str, float]
) -> None:
    """The vertebral column: cortical shell, cancellous bone, discs, spinal canal and the posterior arch.

    Bone is what a model anchors the abdomen on, and the discs make it vary along z as a real spine does.
    """
    g, u, v = body.g, body.u, body.v
    period = rng.uniform(32.0, 38.0)  # one vertebra + disc
    disc = ((body.z / period + rng.uniform(0, 1)) % 1.0) < 0.22
    vb = ((u - spine.u) / spine.a) ** 2 + ((v - spine.v) / spine.b) ** 2
    bone = np.where(vb > 0.7, hu["cortical"], hu["cancellous"] + 40.0 * body.texture)
    canvas.paint(vb < 1.0, np.where(disc, hu["disc"], bone))
    canal_v = spine.canal_v
    canal_r2 = (u - spine.u) ** 2 + (v - canal_v) ** 2
    arch = (canal_r2 < (13.0 * g) ** 2) & (v < canal_v + 4.0 * g)
    spinous = (np.abs(u - spine.u) < 4.5 * g) & (v < canal_v) & (v > canal_v - 38.0 * g)
    transverse = (np.abs(v - canal_v - 2.0 * g) < 5.0 * g) & (np.abs(u - spine.u) < 30.0 * g)
    canvas.paint(body.mask & (arch | spinous | transverse) & ~disc & (body.depth > body.fat_t), hu["cortical"] * 0.75)
    canvas.paint(canal_r2 < (8.0 * g) ** 2, hu["canal"])


def _paint_ribs(canvas: _Canvas, rng: np.random.Generator, body: _Body, hu: dict[str, float]) -> None:
    """Rib cross-sections in the muscle wall, fewer anteriorly low down (below the costal margin).

    Ribs run obliquely, so each one slides along the wall from slice to slice.
    """
    a, b, p, u, v, z = body.a, body.b, body.p, body.u, body.v, body.z
    rib_depth = float(np.mean(body.fat_t + 0.5 * body.wall_t))
    for _ in range(int(rng.integers(14, 20))):
        side = rng.choice([-1.0, 1.0])
        phi0 = rng.uniform(-1.2, 1.1)  # from posterior (-) to anterior (+) of the flank
        phi = side * (np.pi / 2 + phi0) + 0.006 * z * side  # angle of the rib around the body, per slice
        top = 0.0 if phi0 < 0 else 60.0 * phi0  # anterior ribs only higher up
        lowest = top - 40.0 + rng.uniform(-20, 20)
        present = (z > lowest) & (np.sin(z / rng.uniform(20, 30) + rng.uniform(0, 6)) > -0.3)
        ang_u, ang_v = np.cos(phi), np.sin(phi)
        # point on the wall band along that angle (approximately, from the superellipse radius)
        radius = 1.0 / ((np.abs(ang_u) / a) ** p + (np.abs(ang_v) / b) ** p) ** (1.0 / p) * body.widen
        centre_u = body.uc + ang_u * (radius - rib_depth)
        centre_v = body.vc + ang_v * (radius - rib_depth)
        rib = ((u - centre_u) ** 2 + (v - centre_v) ** 2) < (5.5 * body.g) ** 2
        canvas.paint(rib & present & body.mask & ~body.cavity, hu["rib"])


def _paint_lung_bases(
    canvas: _Canvas, rng: np.random.Generator, body: _Body, spine: _Spine, hu: dict[str, float]
) -> None:
    """Posterior costophrenic recesses in the top slices (real: from ~2 cm above the centre), beside the spine."""
    g = body.g
    for side in (-1.0, 1.0):
        lung, _ = body.ellipsoid(
            (body.uc + side * 0.55 * body.a, body.vc - 0.55 * body.b, rng.uniform(90, 105)),
            (60.0 * g, 45.0 * g, 75.0),
            angle=-side * 0.6,
            outline=_Harmonics(rng, 0.06),
        )
        beside_spine = np.abs(body.u - spine.u) > spine.a + 8.0 * g
        canvas.paint(body.cavity & (lung < 1.0) & beside_spine, hu["lung"] + 20.0 * body.fine)


def _acquire(canvas: _Canvas, rng: np.random.Generator, noise: bool) -> np.ndarray:
    """Turn the painted HU map into what a scanner returns: partial volume, CT noise, int16 in the 12-bit range.

    Works on the canvas image in place; the labels stay the exact painted masks.
    """
    image = canvas.image
    ndi.gaussian_filter1d(image, 0.55, axis=1, output=image, truncate=3.0)
    ndi.gaussian_filter1d(image, 0.55, axis=2, output=image, truncate=3.0)
    if noise:
        image += _correlated_normal(rng, canvas.shape, 0.7) * np.float32(rng.uniform(10.0, 15.0))
    np.clip(np.rint(image, out=image), _HU_MIN, _HU_MAX, out=image)
    return image.astype(np.int16)


# ------------------------------------------------------------------------------------------------ phantom


def make_ct_phantom(
    n_slices: int = 24,
    size: int = 128,
    spacing_mm: float = 3.0,
    seed: int | None = 0,
    *,
    contrast: bool = True,
    noise: bool = True,
) -> CTPhantom:
    """Generate a seedable synthetic abdominal CT stack (see the module docstring for the model).

    ``n_slices`` axial slices of ``size`` x ``size`` pixels, isotropic ``spacing_mm``. The stack is centred on
    the upper abdomen (renal hila to liver dome): with the default 24 x 3 mm every class 1..8 appears. ``seed``
    fixes everything (same seed, same arrays); ``None`` draws a fresh stack. ``contrast`` chooses enhanced or
    non-enhanced HU values; ``noise=False`` gives the blurred, noiseless HU map.
    """
    if n_slices < 1 or size < 16:
        raise ValueError(f"stack too small: n_slices={n_slices}, size={size}")
    d = float(spacing_mm)
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    # The stages draw from one generator in this order; reordering them changes every seed's stack.
    rng = np.random.default_rng(seed)
    hu = _tissue_hu(rng, contrast)
    body = _make_body(rng, n_slices, size, d)
    canvas = _Canvas(body.shape, hu["air"])
    _paint_wall_and_filler(canvas, body, hu)
    spine = _place_spine(rng, body)
    _paint_spine_muscles(canvas, rng, body, spine, hu)
    _paint_bowel(canvas, rng, body, hu)
    _paint_liver(canvas, rng, body, hu)
    _paint_spleen(canvas, rng, body, hu)
    _paint_kidneys(canvas, rng, body, spine, hu)
    _paint_stomach(canvas, rng, body, hu)
    _paint_gallbladder(canvas, rng, body, hu)
    _paint_pancreas(canvas, rng, body, hu)
    _paint_vessels(canvas, rng, body, spine, hu)
    _paint_vertebrae(canvas, rng, body, spine, hu)
    _paint_ribs(canvas, rng, body, hu)
    _paint_lung_bases(canvas, rng, body, spine, hu)
    image = _acquire(canvas, rng, noise)
    return CTPhantom(
        image=image, labels=canvas.labels, spacing=(d, d, d), body=np.broadcast_to(body.mask, body.shape).copy()
    )
