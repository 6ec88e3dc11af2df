"""The plugin never loads the model libraries into napari: importing it and docking every widget of its
manifest leaves torch, MONAI and ONNX Runtime unimported (models run in the engine process). Checked in a
fresh interpreter, where nothing else has imported them first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "napari.yaml"
PROBE = """
import sys
import napari
import napari_reseg

viewer = napari.Viewer(show=False)
for name in {widgets!r}:
    viewer.window.add_plugin_dock_widget("napari-reseg", name)
print("DOCKED", len(viewer.window.dock_widgets), file=sys.stderr)
print("IMPORTED", ",".join(m for m in ("torch", "monai", "onnxruntime") if m in sys.modules), file=sys.stderr)
viewer.close()
"""


def test_importing_the_plugin_and_docking_every_widget_imports_no_model_library():
    widgets = [entry["display_name"] for entry in yaml.safe_load(MANIFEST.read_text())["contributions"]["widgets"]]
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(widgets=widgets)], capture_output=True, text=True, timeout=300, check=False
    )
    lines = dict(line.split(" ", 1) for line in done.stderr.splitlines() if line.startswith(("DOCKED", "IMPORTED")))
    assert "DOCKED" in lines, done.stderr[-2000:]
    assert int(lines["DOCKED"]) >= len(widgets)
    assert lines["IMPORTED"].strip() == "", f"napari's process imported {lines['IMPORTED']}"
