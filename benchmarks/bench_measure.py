"""Thickness and ETDRS figures of a 49 x 496 x 768 OCT volume: the whole volume from its labels, and after an
edit of one B-scan (only that B-scan's boundaries are found again), as the live thickness view will need.

Prints milliseconds of each step, best of `--repeats`, with the machine named, and the edit path as a
fraction of the full one (the ratio is what carries over to other machines). The issue's target for a live
update is 200 ms.

    python benchmarks/bench_measure.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from bench_inference import machine_name  # this folder is on the path when a script here runs

from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.measurement.etdrs import en_face, find_fovea, sector_map, sector_means, sector_names
from reseg.measurement.thickness import TOTAL_RETINA, layer_thickness

SHAPE = (49, 496, 768)
SPACING = (0.12, 0.00387, 0.0113)  # a Spectralis 49-line macular volume, 5.8 x 8.7 mm


def best_ms(step: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    labels = make_oct_phantom(SHAPE[0], SHAPE[1], SHAPE[2], seed=1, spacing=SPACING, noise=False).labels
    grid = en_face((SHAPE[0], SHAPE[2]), (SPACING[0], SPACING[2]))
    names = sector_names("OD")
    heights = boundary_rows(labels)

    def figures(rows: np.ndarray) -> dict[str, dict[str, float | None]]:
        thickness = layer_thickness(rows, SPACING[1])
        sectors = sector_map(grid, find_fovea(thickness[TOTAL_RETINA], grid))
        return {layer: sector_means(values, sectors, names) for layer, values in thickness.items()}

    def after_one_edit() -> None:
        heights[:, 24] = boundary_rows(labels[24:25])[:, 0]
        figures(heights)

    full = {
        "boundaries of all B-scans": best_ms(lambda: boundary_rows(labels), args.repeats),
        "thickness + fovea + ETDRS": best_ms(lambda: figures(heights), args.repeats),
    }
    edit = best_ms(after_one_edit, args.repeats)
    print(f"{SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} labels on {machine_name()}, best of {args.repeats}")
    for step, ms in full.items():
        print(f"  {step:28s} {ms:8.1f} ms")
    total = sum(full.values())
    print(f"  {'whole volume':28s} {total:8.1f} ms")
    print(f"  {'after editing one B-scan':28s} {edit:8.1f} ms  ({edit / total:.2f} of the whole volume)")


if __name__ == "__main__":
    main()
