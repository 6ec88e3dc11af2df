"""The user's choices that outlive a session (default device, batch size, reviewer name, where sessions are
kept, how B-scans are displayed), held by napari's plugin settings: declared under `configurations` in the
manifest, shown in napari's Preferences, saved by napari. Read afresh whenever they are needed, so a change in
Preferences applies to the next run without restarting. A napari without plugin settings gets the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PLUGIN_NAME = "napari-reseg"
PHYSICAL, STRETCHED = "physical", "stretched"


@dataclass(frozen=True)
class Preferences:
    """Defaults here equal the manifest's `configurations` defaults (a test checks that they agree)."""

    device: str = "auto"
    batch_size: int = 0  # 0: the engine's choice for the device (`reseg.inference.backends.batch_size_for`)
    reviewer: str = ""  # empty: the operating-system user name
    session_folder: str = ""  # empty: beside the scan (or the user data folder where that is read-only)
    bscan_aspect: str = STRETCHED
    axial_stretch: float = 3.0

    @property
    def session_dir(self) -> Path | None:
        return Path(self.session_folder).expanduser() if self.session_folder.strip() else None

    @property
    def axial_display_factor(self) -> float:
        """How many times its physical size an OCT B-scan's depth axis is shown (1 for the physical aspect).

        Spectralis pixels are about 3.9 um deep and 11.3 um wide: at the physical aspect a B-scan is a thin
        strip, so graders look at it stretched in depth; the default 3 is close to square pixels.
        """
        return 1.0 if self.bscan_aspect == PHYSICAL else max(1.0, float(self.axial_stretch))


def _plugin_settings():
    """napari's settings object of this plugin, or None (a napari before 0.9, or the plugin disabled)."""
    try:
        from napari.settings import get_plugin_settings
    except ImportError:
        return None
    try:
        return get_plugin_settings(PLUGIN_NAME)
    except KeyError:  # the plugin's manifest is not registered: nothing can have been set
        return None


def preferences() -> Preferences:
    """The current plugin settings, or the defaults where napari has none."""
    settings = _plugin_settings()
    if settings is None:
        return Preferences()
    return Preferences(
        device=settings.segmentation.device,
        batch_size=int(settings.segmentation.batch_size),
        reviewer=settings.review.reviewer,
        session_folder=settings.review.session_folder,
        bscan_aspect=settings.display.bscan_aspect,
        axial_stretch=float(settings.display.axial_stretch),
    )
