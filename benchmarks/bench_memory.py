"""Peak memory of `reseg segment`: a 512 x 512 x 300 CT as a ratio of the scan's float32 size, and OCT volumes
of growing length (the peak should follow the batch, not the number of B-scans). Issue 15 asks for the CT
ratio below 2.

Each run is a fresh `reseg segment` process whose peak resident set size the kernel reports; it is started by a
bare launcher, since a child's peak counts the memory of the process it was forked from. The fixed
part, a process that only imports torch and loads the model, is measured and printed too: it is paid once
whatever the scan. `--source DIR` runs another checkout (e.g. `git worktree add /tmp/old <sha>`) side by side,
to compare before and after in one run on one machine.

    python benchmarks/bench_memory.py [--source /tmp/old] [--ct-slices 300] [--oct 8 49 97]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from bench_inference import load, machine_name  # this folder is on the path when a script here runs

from reseg.data.phantom import make_oct_phantom

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_CT = REPOSITORY.parent / "shared" / "data" / "ct_totalseg" / "example_ct_dicom"
FIXED = "import sys, torch; from reseg.zoo.weights import load_model; load_model(sys.argv[1], device='cpu')"
# a small process that runs the command and prints its peak RSS (kB) and exit code
LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)"
)


def peak_mib(arguments: list[str], source: Path) -> tuple[float, str]:
    """Peak RSS (MiB) of `python ARGUMENTS` run with `source`/src first on the path, and its output's last line."""
    env = {**os.environ, "PYTHONPATH": str(source / "src")}
    command = [sys.executable, "-c", LAUNCHER, sys.executable, *arguments]
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = done.stdout.strip().splitlines()
    peak_kb, code = lines[-1].split()
    if code != "0":
        raise SystemExit(f"{' '.join(arguments)} failed:\n" + "\n".join(lines[-5:]))
    return int(peak_kb) / 1024, lines[-2] if len(lines) > 1 else ""


def write_ct(path: Path, slices: int) -> tuple[int, ...]:
    """A 512 x 512 x `slices` int16 CT: the real 20-slice DICOM series mirrored along z, or the CT phantom."""
    if REAL_CT.is_dir():
        from reseg.io import read_volume

        scan = read_volume(REAL_CT)
        data, spacing = scan.data, scan.spacing
    else:
        from reseg.data.ct_phantom import make_ct_phantom

        phantom = make_ct_phantom(n_slices=20, size=512, spacing_mm=1.0, seed=0)
        data, spacing = phantom.image.astype(np.int16), (2.0, 1.0, 1.0)
    period = np.r_[np.arange(len(data)), np.arange(len(data))[::-1]]
    stack = data[period[np.arange(slices) % len(period)]]
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(stack.T), affine), path)
    return stack.shape


def write_oct(path: Path, bscans: int) -> tuple[int, ...]:
    image = make_oct_phantom(n_bscans=bscans, height=496, width=768, seed=3).image
    tifffile.imwrite(path, image, imagej=True, resolution=(1 / 0.0113, 1 / 0.00387))
    return image.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, action="append", help="another checkout to measure beside this one")
    parser.add_argument("--ct-slices", type=int, default=300)
    parser.add_argument("--oct", type=int, nargs="*", default=[8, 49, 97], metavar="BSCANS")
    args = parser.parse_args()
    sources = [REPOSITORY, *(args.source or [])]
    print(f"{machine_name(__import__('torch').device('cpu'))}; {load()}")
    with tempfile.TemporaryDirectory() as folder:
        ct = Path(folder) / "ct.nii.gz"
        shape = write_ct(ct, args.ct_slices)
        float32_mib = np.prod(shape) * 4 / 2**20
        print(f"\nCT {shape} int16 .nii.gz, float32 size {float32_mib:.0f} MiB (issue 15: peak below 2x)")
        for source in sources:
            fixed, _ = peak_mib(["-c", FIXED, "l2gnet-ct"], source)
            command = ["-m", "reseg.cli", "segment", str(ct), "-o", str(Path(folder) / "labels.nii.gz")]
            peak, _ = peak_mib([*command, "--device", "cpu"], source)
            print(
                f"  {source}: peak {peak:.0f} MiB = {peak / float32_mib:.2f}x the float32 volume "
                f"(fixed part: torch + model {fixed:.0f} MiB = {fixed / float32_mib:.2f}x; "
                f"the rest {(peak - fixed) / float32_mib:.2f}x)"
            )
        print("\nOCT 496 x 768 uint8 TIFF volumes: peak RSS against the number of B-scans")
        for source in sources:
            fixed, _ = peak_mib(["-c", FIXED, "lightreseg-oct"], source)
            peaks = []
            for bscans in args.oct:
                scan = Path(folder) / f"oct{bscans}.tif"
                if not scan.exists():
                    write_oct(scan, bscans)
                command = ["-m", "reseg.cli", "segment", str(scan), "-o", str(Path(folder) / "oct_labels.tif")]
                peak, _ = peak_mib([*command, "--device", "cpu"], source)
                peaks.append(peak)
                volume_mib = bscans * 496 * 768 * 4 / 2**20
                print(
                    f"  {source}: {bscans:3d} B-scans peak {peak:.0f} MiB = {peak / volume_mib:.2f}x the float32 "
                    f"volume ({volume_mib:.0f} MiB), {peak - fixed:.0f} MiB above torch + model ({fixed:.0f} MiB)"
                )
            if len(peaks) > 1:
                per_bscan = (peaks[-1] - peaks[0]) / (args.oct[-1] - args.oct[0])
                float32_bscan = 496 * 768 * 4 / 2**20
                print(
                    f"  {source}: growth {per_bscan:.2f} MiB per B-scan = {per_bscan / float32_bscan:.2f}x a float32 "
                    "B-scan (the uint8 scan and labels are held whole; the batch's working memory is not repeated)"
                )


if __name__ == "__main__":
    main()
