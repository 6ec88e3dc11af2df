"""How long napari's event loop stalls while a user opens the plugin's widgets and runs a model.

A QTimer fires every 5 ms on the GUI thread and records the gaps between its ticks; a gap much longer than
5 ms is time the interface could not react. Measured in a fresh process, so torch is cold, in four phases:

1. docking each widget (Segment, Review, Fine-tune) from the plugin's manifest, as the Plugins menu does;
2. the seconds after, while the engine (torch, the models) loads in a worker;
3. pressing Run at once, before the engine is warm: the first run with a cold model;
4. a second run over the whole volume with the model loaded, and how long after Run the first B-scan's
   labels are on screen (the B-scan on screen runs first, alone).

Run under a display (e.g. `xvfb-run -a`):

    xvfb-run -a python benchmarks/bench_ui_stall.py [--bscans 16] [--batch 0]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from qtpy.QtCore import QEventLoop, QTimer


class Probe:
    """Ticks every 5 ms on the GUI thread; `gaps(start, end)` are the tick gaps (ms) of a window."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start()

    def gaps(self, start: float, end: float) -> np.ndarray:
        """Gaps from the last tick before `start` on, so a call that blocks from `start` counts in full."""
        before = [t for t in self.ticks if t < start][-1:]
        ticks = np.array(before + [t for t in self.ticks if start <= t <= end])
        return np.diff(ticks) * 1e3 if len(ticks) > 1 else np.zeros(1)


def spin_until(done, limit: float = 900.0) -> float:
    """Run napari's event loop (a real one: `processEvents` alone never deletes what Qt scheduled for
    deletion, so e.g. the activity indicator would animate, and repaint the window, forever) until `done()`."""
    start = time.perf_counter()
    loop = QEventLoop()
    check = QTimer()
    check.setInterval(10)
    check.timeout.connect(lambda: loop.quit() if done() or time.perf_counter() - start > limit else None)
    check.start()
    loop.exec()
    check.stop()
    return time.perf_counter() - start


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    spin_until(lambda: time.perf_counter() >= end)


def row(phase: str, blocked_ms: float | None, gaps: np.ndarray, seconds: float) -> str:
    call = f"{blocked_ms:.0f}" if blocked_ms is not None else "-"
    return (
        f"| {phase} | {call} | {gaps.max():.0f} | {np.percentile(gaps, 99):.0f} | {np.median(gaps):.0f} "
        f"| {seconds:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bscans", type=int, default=16)
    parser.add_argument("--batch", type=int, default=0, help="0: auto, the engine's choice for the device")
    args = parser.parse_args()

    import napari

    from reseg.data.phantom import make_oct_phantom

    folder = Path(tempfile.mkdtemp())
    phantom = make_oct_phantom(n_bscans=args.bscans, seed=1)
    z, y, x = phantom.spacing
    scan = folder / "scan.tif"
    tifffile.imwrite(
        scan,
        phantom.image,
        imagej=True,
        resolution=(1 / x, 1 / y),
        metadata={"spacing": z, "unit": "mm", "axes": "ZYX"},
    )
    viewer = napari.Viewer(show=True)
    viewer.open(str(scan), plugin="napari-reseg")
    spin(1.0)
    probe = Probe()
    spin(0.5)
    lines = []

    widgets = {}
    for name in ("Segment", "Review", "Fine-tune"):
        start = time.perf_counter()
        widgets[name] = viewer.window.add_plugin_dock_widget("napari-reseg", name)[1]
        blocked = (time.perf_counter() - start) * 1e3
        spin(0.3)
        lines.append(row(f"dock {name}", blocked, probe.gaps(start, time.perf_counter()), 0.3))
    segment = widgets["Segment"]
    segment.batch_spin.setValue(args.batch)

    start = time.perf_counter()
    segment.run_button.click()  # at once: the engine is still loading in the background
    blocked = (time.perf_counter() - start) * 1e3
    seconds = spin_until(lambda: not segment.task.running)
    lines.append(
        row(f"first Run, cold engine ({args.bscans} B-scans)", blocked, probe.gaps(start, time.perf_counter()), seconds)
    )
    first_status = segment.status.text()
    spin_until(lambda: not widgets["Fine-tune"].engine.running)

    start = time.perf_counter()
    segment.run_button.click()
    blocked = (time.perf_counter() - start) * 1e3
    first_labels = spin_until(lambda: segment.progress_bar.value() >= 1 or not segment.task.running)
    seconds = first_labels + spin_until(lambda: not segment.task.running)
    lines.append(
        row(
            f"second Run, whole volume ({args.bscans} B-scans)",
            blocked,
            probe.gaps(start, time.perf_counter()),
            seconds,
        )
    )
    probe.timer.stop()

    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, napari {napari.__version__}, Qt binding {__import__('qtpy').API_NAME}"
    )
    print(
        f"scan: {args.bscans} B-scans of {phantom.image.shape[1]}x{phantom.image.shape[2]}, lightreseg-oct, "
        f"batch {args.batch or 'auto'}; first run: {first_status}; second run: {segment.status.text()}"
    )
    print(f"second run, warm model: the first B-scan's labels on screen {first_labels:.2f} s after Run")
    print()
    print("| phase | call blocked (ms) | longest gap (ms) | 99th pct (ms) | median (ms) | seconds |")
    print("|---|---|---|---|---|---|")
    print("\n".join(lines))
    viewer.close()


if __name__ == "__main__":
    main()
