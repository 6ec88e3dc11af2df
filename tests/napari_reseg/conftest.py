"""Fixtures for plugin tests: the viewer and widgets exactly as napari hands them to users (a public-only proxy
viewer, widgets docked through the plugin's manifest), scans opened through the plugin's reader, and a user's
hands: clicks, answers to questions, waiting for work to finish."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import tifffile
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QMessageBox

from reseg.data.phantom import make_oct_phantom


@pytest.fixture
def viewer(make_napari_viewer_proxy):
    return make_napari_viewer_proxy()


@pytest.fixture
def dock(viewer):
    """`dock("Segment")`: the widget as napari's Plugins menu docks it."""

    def open_widget(name: str):
        _, widget = viewer.window.add_plugin_dock_widget("napari-reseg", name)
        return widget

    return open_widget


@pytest.fixture
def segment(dock):
    return dock("Segment")


@pytest.fixture
def click(qtbot):
    def press(button) -> None:
        assert button.isEnabled(), f"{button.text()!r} is disabled"
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    return press


@pytest.fixture
def answers(monkeypatch):
    """The user's answers to yes/no questions, in order (`answers.append(False)`); every question is kept in
    `answers.asked`. A question nobody prepared an answer for fails the test."""

    class Answers(list):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

    prepared = Answers()

    def question(parent, title, text, *args, **kwargs):
        prepared.asked.append(text)
        assert prepared, f"unexpected question: {title}: {text}"
        return QMessageBox.StandardButton.Yes if prepared.pop(0) else QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", question)
    return prepared


@pytest.fixture
def wait_for(qtbot):
    """Block (processing Qt events) until the widget's background task has ended."""

    def wait(widget, timeout_ms: int = 120_000) -> None:
        qtbot.waitUntil(lambda: not widget.task.running, timeout=timeout_ms)

    return wait


@pytest.fixture
def write_oct_scan(tmp_path):
    """`write_oct_scan("name.tif", n_bscans, seed)`: a small phantom OCT stack as an ImageJ TIFF with
    Spectralis spacing in the test's folder; returns (path, phantom)."""

    def write(name: str = "scan.tif", n_bscans: int = 4, seed: int = 11):
        phantom = make_oct_phantom(n_bscans=n_bscans, height=224, width=192, seed=seed)
        z, y, x = phantom.spacing
        path = tmp_path / name
        tifffile.imwrite(
            path,
            phantom.image,
            imagej=True,
            resolution=(1 / x, 1 / y),
            metadata={"spacing": z, "unit": "mm", "axes": "ZYX"},
        )
        return path, phantom

    return write


@pytest.fixture
def oct_file(write_oct_scan):
    return write_oct_scan()


@pytest.fixture
def small_oct(viewer, oct_file):
    """The small OCT scan opened as a user opens it: File > Open with napari-reseg."""
    path, phantom = oct_file
    [layer] = viewer.open(str(path), plugin="napari-reseg")
    return layer, phantom


@pytest.fixture
def segmented(viewer, segment, small_oct, click, wait_for):
    """The scan opened from its file and segmented with the model the widget preselected."""
    image, _ = small_oct
    click(segment.run_button)
    wait_for(segment)
    return image, viewer.layers[f"{image.name} labels"]


@pytest.fixture(autouse=True)
def reseg_settings(tmp_path, monkeypatch):
    """napari's plugin settings of napari-reseg (Preferences > napari-reseg), kept in the test's folder, with
    review sessions saved there too: a test never writes beside a scan of ../shared/data. Where napari has
    no plugin settings (before 0.9) a stand-in with the manifest's sections plays their part."""
    import napari.settings

    from napari_reseg import _settings

    if hasattr(napari.settings, "get_plugin_settings"):
        napari.settings._clear_plugin_settings_cache()
        monkeypatch.setattr(napari.settings, "_CFG_PATH", str(tmp_path / "napari-settings.yaml"))
        settings = napari.settings.get_plugin_settings("napari-reseg")
    else:
        defaults = _settings.Preferences()
        settings = SimpleNamespace(
            segmentation=SimpleNamespace(device=defaults.device, batch_size=defaults.batch_size),
            review=SimpleNamespace(reviewer=defaults.reviewer, session_folder=defaults.session_folder),
            display=SimpleNamespace(bscan_aspect=defaults.bscan_aspect, axial_stretch=defaults.axial_stretch),
        )
        monkeypatch.setattr(_settings, "_plugin_settings", lambda: settings)
    settings.review.session_folder = str(tmp_path / "sessions")
    yield settings
    if hasattr(napari.settings, "get_plugin_settings"):
        napari.settings._clear_plugin_settings_cache()
