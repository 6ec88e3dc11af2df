"""Longest napari event-loop stall while the Segment widget segments a whole volume.

A QTimer fires every 5 ms on the GUI thread and records the gaps between its ticks; a gap much longer than
5 ms is time the interface could not react. Run under a display (e.g. `xvfb-run -a`):

    xvfb-run -a python benchmarks/bench_ui_stall.py [--bscans 16] [--batch 4] [--model lightreseg-oct]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import napari
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_reseg._segment_widget import SegmentWidget
from reseg.data.phantom import make_oct_phantom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bscans", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--model", default="lightreseg-oct")
    args = parser.parse_args()

    phantom = make_oct_phantom(n_bscans=args.bscans, seed=1)
    viewer = napari.Viewer(show=True)
    viewer.add_image(phantom.image, name="scan", scale=phantom.spacing)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.model_combo.setCurrentText(args.model)
    widget.batch_spin.setValue(args.batch)
    for _ in range(20):
        QApplication.processEvents()

    ticks: list[float] = []
    probe = QTimer()
    probe.setInterval(5)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    started = time.perf_counter()
    widget.start()
    while widget.worker is not None:
        QApplication.processEvents()
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    probe.stop()

    gaps = np.diff(ticks) * 1e3
    print(f"{args.bscans} B-scans of 496x768, {args.model}, batch {args.batch}, on "
          f"{widget.run.device_used}: run took {elapsed:.1f} s ({widget.status.text()})")
    print(f"event-loop gaps over {len(gaps)} probe ticks: longest {gaps.max():.0f} ms, "
          f"99th percentile {np.percentile(gaps, 99):.0f} ms, median {np.median(gaps):.0f} ms")
    viewer.close()


if __name__ == "__main__":
    main()
