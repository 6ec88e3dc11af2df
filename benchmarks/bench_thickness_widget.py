"""How long the Thickness widget takes to show new figures after an edit of one B-scan of a 49 x 496 x 768 OCT
volume (the issue's target: 200 ms), in napari as a grader uses it.

A phantom volume and its true labels are written to a temporary folder and opened with napari-reseg, the
Thickness widget is docked (RNFL chosen), and each repeat paints the top rows of the GCL+IPL of 120 A-scans
of one B-scan as RNFL through the labels layer (`data_setitem`, as the boundary editor and the fill tool
write; a brush stroke ends in the same call), alternating with painting them back. Timed from the call to:

- figures: the map's row and the sector table hold the new numbers (the widget's update has run);
- drawn: the window has then processed its pending repaints (map and table on screen);
- the widget's own update (measure the B-scan again, map, sectors, table) timed alone, the rest being napari's
  painting of the labels and the window.

Also the time to dock the widget on the open volume (every B-scan measured once). Prints the median and the
range over `--repeats`, with the machine. Run under a display (e.g. `xvfb-run -a`):

    xvfb-run -a python benchmarks/bench_thickness_widget.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_inference import machine_name  # this folder is on the path when a script here runs
from qtpy.QtWidgets import QApplication

from reseg.classes import OCT_CLASSES
from reseg.data.phantom import make_oct_phantom
from reseg.io import Volume, read_volume, write_image, write_labels

SHAPE = (49, 496, 768)
SPACING = (0.12, 0.00387, 0.0113)  # a Spectralis 49-line macular volume, 5.8 x 8.7 mm
BSCAN = 24  # through the fovea


def spin_until(done, limit_s: float = 10.0) -> float:
    """Process Qt events until `done()`; seconds taken."""
    start = time.perf_counter()
    while not done():
        QApplication.processEvents()
        if time.perf_counter() - start > limit_s:
            raise TimeoutError("the widget did not show the edit")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import napari

    phantom = make_oct_phantom(*SHAPE, seed=1, spacing=SPACING, noise=False)
    with tempfile.TemporaryDirectory() as folder:
        scan_path = Path(folder) / "macula.tif"
        scan = write_image(scan_path, Volume(phantom.image, SPACING, "OCT", scan_path))
        labels_path = write_labels(Path(folder) / "labels.tif", phantom.labels, read_volume(scan), OCT_CLASSES)
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1600, 1000)
        viewer.open(str(scan), plugin="napari-reseg")
        [labels] = viewer.open(str(labels_path), plugin="napari-reseg")
        viewer.dims.set_current_step(0, BSCAN)
        QApplication.processEvents()
        start = time.perf_counter()
        _, widget = viewer.window.add_plugin_dock_widget("napari-reseg", "Thickness")
        QApplication.processEvents()
        dock_ms = (time.perf_counter() - start) * 1000
        widget.layer_combo.setCurrentText("RNFL")
        QApplication.processEvents()
        thickness_map = next(layer for layer in viewer.layers if "thickness map" in layer.name)

        data = np.asarray(labels.data)
        columns = [c for c in range(SHAPE[2] // 2 - 60, SHAPE[2] // 2 + 60) if (data[BSCAN, :, c] == 2).sum() > 6]
        first = [int(np.argmax(data[BSCAN, :, c] == 2)) for c in columns]
        cells = [(BSCAN, row + d, c) for c, row in zip(columns, first, strict=True) for d in range(6)]
        indices = tuple(np.array(axis) for axis in zip(*cells, strict=True))

        figures, drawn, value = [], [], 2
        for _ in range(args.repeats):
            value = 3 - value  # RNFL (1), then back to GCL+IPL (2)
            table_before = widget.sector_table()
            row_before = np.asarray(thickness_map.data)[BSCAN].copy()
            start = time.perf_counter()
            labels.data_setitem(indices, value)
            spin_until(
                lambda table=table_before, row=row_before: (
                    widget.sector_table() != table and not np.array_equal(np.asarray(thickness_map.data)[BSCAN], row)
                )
            )
            figures.append((time.perf_counter() - start) * 1000)
            QApplication.processEvents()
            drawn.append((time.perf_counter() - start) * 1000)
        own = []  # the widget's update alone: called at once, before napari's event loop gets to it
        for _ in range(args.repeats):
            value = 3 - value
            labels.data_setitem(indices, value)
            start = time.perf_counter()
            widget.apply_edits()
            own.append((time.perf_counter() - start) * 1000)
            QApplication.processEvents()
        viewer.close()

    print(f"{SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} OCT labels, Thickness docked, napari {napari.__version__}")
    load = ", ".join(f"{average:.1f}" for average in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, {machine_name()}; load average {load} (other work slows every figure)")
    print(f"  dock the widget (measure every B-scan)   {dock_ms:8.1f} ms")
    for name, times in (
        ("edit -> figures (map row, table)", figures),
        ("edit -> figures drawn", drawn),
        ("of which the widget's own update", own),
    ):
        values = np.array(times)
        print(
            f"  {name:40s} {np.median(values):8.1f} ms median "
            f"({values.min():.1f}-{values.max():.1f}, {len(values)} edits of {len(columns)} A-scans)"
        )
    print("  target: 200 ms")


if __name__ == "__main__":
    main()
