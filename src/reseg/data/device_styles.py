"""Re-render an OCT B-scan as another device or export would show it, with the anatomy (and labels) unchanged.

Devices differ less in anatomy than in how they turn backscattered light into grey values: the display
mapping (Spectralis exports ``intensity**0.25``; Cirrus- and Topcon-style exports are closer to a log scale),
frame averaging (how much speckle is left), the point-spread function and sampling (blur, lateral and axial
resolution), signal fall-off across the frame (vignetting, depth roll-off) and, in screenshots and some
exports, a pseudo-colour map later converted back to grey. A model that has learned one device's look as
anatomy fails on the others, so training draws random styles (:func:`random_style`) and ``reseg evaluate
--robustness`` measures a model on fixed ones (:data:`DEVICE_STYLES`).

Every step works on one 2-D display image (0-255): it is taken back to linear intensity with the Spectralis
exponent, changed there, and displayed again by the style's mapping. Geometry never changes (a blurred or
resampled image keeps its shape), so the labels of the original image stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["DEVICE_STYLES", "DeviceStyle", "random_style", "render_style"]

SOURCE_EXPONENT = 0.25  # display = 255 * intensity ** 0.25 (Spectralis, and the Duke PNGs)

# A pseudo-colour map with a monotone but far from linear luminance ("hot"-like: black, red, yellow, white),
# as (position, R, G, B) control points; converted back to grey with the ITU-R BT.601 luma weights.
_COLOUR_MAP = np.array(
    [[0.0, 0, 0, 0], [0.35, 230, 0, 0], [0.7, 255, 210, 0], [1.0, 255, 255, 255]],
    dtype=np.float64,
)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass(frozen=True)
class DeviceStyle:
    """How a device would show a B-scan. The identity style (all defaults) returns the image unchanged."""

    name: str = "spectralis"
    display: str = "power"  # "power": 255 * I**exponent; "log": 255 * log(1 + k I) / log(1 + k)
    exponent: float = SOURCE_EXPONENT
    log_range: float = 1000.0  # k of the log display: the dynamic range shown, 30 dB at 1000
    gain: float = 1.0  # overall signal strength
    speckle: float = 0.0  # sigma of extra log-normal speckle (less frame averaging)
    blur: tuple[float, float] = (0.0, 0.0)  # Gaussian point-spread sigma (axial, lateral), pixels
    resolution: tuple[float, float] = (1.0, 1.0)  # sampling relative to the image's (axial, lateral), <= 1
    vignetting: float = 0.0  # signal lost at the left and right edges, 0..1
    depth_roll_off: float = 0.0  # signal lost at the bottom row relative to the top, 0..1
    pseudo_colour: bool = False  # shown through a colour map, then converted back to grey

    def __post_init__(self) -> None:
        if self.display not in ("power", "log"):
            raise ValueError(f"display must be 'power' or 'log', got {self.display!r}")
        if not all(0.0 < r <= 1.0 for r in self.resolution):
            raise ValueError(f"resolution factors must be in (0, 1], got {self.resolution}")


# Fixed styles for the robustness report; each changes one kind of thing, so a drop names its cause.
DEVICE_STYLES: tuple[DeviceStyle, ...] = (
    DeviceStyle("spectralis"),
    DeviceStyle("log_display", display="log", log_range=300.0),
    DeviceStyle("gamma_display", exponent=0.5, gain=1.6),
    DeviceStyle("heavy_speckle", speckle=1.0),
    DeviceStyle("low_resolution", blur=(1.2, 1.0), resolution=(0.6, 0.5)),
    DeviceStyle("pseudo_colour", pseudo_colour=True),
    DeviceStyle("weak_signal", gain=0.45, vignetting=0.5, depth_roll_off=0.4),
)


def random_style(rng: np.random.Generator) -> DeviceStyle:
    """A random device look for training: each property drawn independently, about half of them left alone."""

    def maybe(probability: float) -> bool:
        return bool(rng.random() < probability)

    log = maybe(0.3)
    return DeviceStyle(
        name="random",
        display="log" if log else "power",
        exponent=float(rng.uniform(0.18, 0.6)) if maybe(0.5) else SOURCE_EXPONENT,
        log_range=float(10 ** rng.uniform(1.5, 3.5)),
        gain=float(np.exp(rng.uniform(-0.9, 0.6))) if maybe(0.5) else 1.0,
        speckle=float(rng.uniform(0.1, 1.0)) if maybe(0.4) else 0.0,
        blur=(float(rng.uniform(0.3, 1.8)), float(rng.uniform(0.3, 1.5))) if maybe(0.4) else (0.0, 0.0),
        resolution=(float(rng.uniform(0.5, 1.0)), float(rng.uniform(0.4, 1.0))) if maybe(0.3) else (1.0, 1.0),
        vignetting=float(rng.uniform(0.1, 0.6)) if maybe(0.3) else 0.0,
        depth_roll_off=float(rng.uniform(0.1, 0.6)) if maybe(0.3) else 0.0,
        pseudo_colour=maybe(0.15),
    )


def render_style(image: np.ndarray, style: DeviceStyle, rng: np.random.Generator) -> np.ndarray:
    """The 2-D display image (0-255, any dtype) as `style` would show it: float32 in 0-255, the same shape.

    `rng` draws the speckle; styles without speckle use none of it.
    """
    if image.ndim != 2:
        raise ValueError(f"render_style takes one 2-D image, got shape {image.shape}")
    display = np.clip(np.asarray(image, dtype=np.float32), 0.0, 255.0) / 255.0
    intensity = display ** np.float32(1.0 / SOURCE_EXPONENT)
    intensity = _optics(intensity, style)
    if style.speckle > 0:
        noise = ndi.gaussian_filter(rng.standard_normal(intensity.shape).astype(np.float32), (1.0, 0.75))
        noise *= np.float32(style.speckle / max(float(noise.std()), 1e-6))
        intensity *= np.exp(noise - np.float32(0.5 * style.speckle**2))
    intensity *= _fall_off(intensity.shape, style) * np.float32(style.gain)
    shown = _display(np.clip(intensity, 0.0, 1.0), style)
    if style.pseudo_colour:
        shown = _through_colour_map(shown)
    return (shown * 255.0).astype(np.float32)


def _optics(intensity: np.ndarray, style: DeviceStyle) -> np.ndarray:
    """Blur by the style's point-spread function and sample at its resolution, back on the image's grid."""
    if any(s > 0 for s in style.blur):
        intensity = ndi.gaussian_filter(intensity, style.blur, truncate=3.0)
    if style.resolution != (1.0, 1.0):
        height, width = intensity.shape
        small = ndi.zoom(intensity, style.resolution, order=1, grid_mode=True, mode="nearest")
        back = (height / small.shape[0], width / small.shape[1])
        intensity = ndi.zoom(small, back, order=1, grid_mode=True, mode="nearest")[:height, :width]
    return intensity


def _fall_off(shape: tuple[int, ...], style: DeviceStyle) -> np.ndarray:
    """The smooth signal loss across the frame: quadratic towards the side edges, linear with depth."""
    height, width = shape
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)
    lateral = 1.0 - np.float32(style.vignetting) * x**2
    axial = 1.0 - np.float32(style.depth_roll_off) * y
    return axial[:, None] * lateral[None, :]


def _display(intensity: np.ndarray, style: DeviceStyle) -> np.ndarray:
    """Linear intensity (0-1) to display values (0-1) by the style's mapping."""
    if style.display == "log":
        k = np.float32(style.log_range)
        return np.log1p(k * intensity) / np.log1p(k)
    return intensity ** np.float32(style.exponent)


def _through_colour_map(shown: np.ndarray) -> np.ndarray:
    """Display values (0-1) shown through the pseudo-colour map and converted back to grey (0-1)."""
    points, rgb = _COLOUR_MAP[:, 0], _COLOUR_MAP[:, 1:]
    grey_per_point = rgb @ _LUMA / 255.0
    return np.interp(shown, points, grey_per_point).astype(np.float32)
