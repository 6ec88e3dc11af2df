"""Cohort throughput of `reseg segment FOLDER -o OUT`: one process, then two under torchrun on the same cohort,
side by side, in scans per minute and B-scans per second (wall time from launch to summary, start-up included).

The cohort is synthetic OCT (phantom volumes of 496 x 768 B-scans); the threads are shared out so that both
runs use the machine's cores (one process with all of them, two with half each).

    python benchmarks/bench_cohort.py [--scans 8] [--bscans 4]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tifffile
import torch
from bench_inference import load, machine_name  # this folder is on the path when a script here runs

from reseg.data.phantom import make_oct_phantom


def run_cohort(scans: Path, out: Path, processes: int) -> float:
    """Seconds for the whole cohort with `processes` processes, each with its share of the cores."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    command = [sys.executable, "-m", "reseg.cli", "segment", str(scans), "-o", str(out), "--device", "cpu"]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
        command += ["-m", "reseg.cli", "segment", str(scans), "-o", str(out), "--device", "cpu"]
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    with open(out / "summary.csv", newline="", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == len(list(scans.iterdir())) and all(row["status"] == "segmented" for row in rows)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--bscans", type=int, default=4, help="B-scans per scan")
    args = parser.parse_args()
    print(f"{machine_name(torch.device('cpu'))}; {load()}")
    with tempfile.TemporaryDirectory() as folder:
        scans = Path(folder) / "scans"
        scans.mkdir()
        for index in range(args.scans):
            image = make_oct_phantom(n_bscans=args.bscans, height=496, width=768, seed=index).image
            tifffile.imwrite(scans / f"eye{index:03d}.tif", image, imagej=True)
        total = args.scans * args.bscans
        print(f"cohort: {args.scans} scans x {args.bscans} B-scans of 496 x 768 ({total} B-scans)")
        results = {}
        for processes in (1, 2):
            seconds = run_cohort(scans, Path(folder) / f"out{processes}", processes)
            results[processes] = seconds
            print(
                f"  {processes} process(es): {seconds:6.1f} s, {args.scans / seconds * 60:5.1f} scans/min, "
                f"{total / seconds:5.2f} B-scans/s"
            )
        print(f"  2 processes / 1: {results[1] / results[2]:.2f}x the throughput")


if __name__ == "__main__":
    main()
