"""torch and MONAI never load on napari's GUI thread: opening the plugin's widgets, a scan, and running a
model leave every import of them to worker threads. Checked in a fresh Python (the test process has long
imported torch), with an import hook that notes which thread asks for each module first."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.smoke

SCRIPT = textwrap.dedent('''
    import json, sys, threading, time

    asked_on_gui_thread = []

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "monai") and threading.current_thread() is threading.main_thread():
                asked_on_gui_thread.append(name)
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
    after_widgets = list(asked_on_gui_thread)
    viewer.open(sys.argv[1], plugin="napari-reseg")
    segment = widgets["Segment"]
    segment.run_button.click()

    def idle():
        return not segment.task.running and not segment.engine.running and not widgets["Fine-tune"].engine.running

    deadline = time.time() + 300
    while not idle() and time.time() < deadline:
        QApplication.processEvents()
        time.sleep(0.005)
    print(json.dumps({"after_widgets": after_widgets, "all": asked_on_gui_thread,
                      "torch_loaded": "torch" in sys.modules, "status": segment.status.text(),
                      "labelled": bool(viewer.layers[-1].data.any())}))
    viewer.close()
''')


def test_no_torch_or_monai_import_on_the_gui_thread(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "scan.tif")], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["torch_loaded"] and report["labelled"] and "ran on" in report["status"], report
    assert report["after_widgets"] == [] and report["all"] == [], report
