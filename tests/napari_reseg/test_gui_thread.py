"""torch and MONAI never load into napari: opening the plugin's widgets and a scan, running a model and listing
a network's parts leave them to the engine process. Checked in a fresh Python (the test process has long
imported torch), with an import hook that notes every attempt to import them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.smoke

SCRIPT = textwrap.dedent("""
    import json, sys, threading, time

    asked = []

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "monai"):
                asked.append(f"{name} ({threading.current_thread().name})")
            return None

    sys.meta_path.insert(0, Watch())

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from reseg.data.phantom import make_oct_phantom

    phantom = make_oct_phantom(n_bscans=2, height=224, width=192, seed=1)
    tifffile.imwrite(sys.argv[1], phantom.image, imagej=True, resolution=(1 / 0.0113, 1 / 0.0039),
                     metadata={"spacing": 0.12, "unit": "mm", "axes": "ZYX"})
    viewer = napari.Viewer(show=False)
    widgets = {name: viewer.window.add_plugin_dock_widget("napari-reseg", name)[1]
               for name in ("Segment", "Review", "Fine-tune")}
    after_widgets = list(asked)
    viewer.open(sys.argv[1], plugin="napari-reseg")
    segment = widgets["Segment"]
    segment.run_button.click()

    def idle():
        return not segment.task.running and not segment.engine.running and not widgets["Fine-tune"].engine.running

    deadline = time.time() + 300
    while not idle() and time.time() < deadline:
        QApplication.processEvents()
        time.sleep(0.005)
    print(json.dumps({"after_widgets": after_widgets, "all": asked, "torch_loaded": "torch" in sys.modules,
                      "status": segment.status.text(), "labelled": bool(viewer.layers[-1].data.any()),
                      "parts": widgets["Fine-tune"].freeze_list.count()}))
    viewer.close()
""")


@pytest.mark.slow
def test_no_torch_or_monai_in_napari(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "scan.tif")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["labelled"] and "ran on" in report["status"] and report["parts"] > 3, report
    assert not report["torch_loaded"] and report["all"] == [], report
