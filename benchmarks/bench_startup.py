"""CPU seconds of the `reseg` commands that run no model, each in a fresh Python, and which heavy libraries
they imported: start-up is what a user waits for on every `--help`, `models` or mistyped path.

    python benchmarks/bench_startup.py [--repeats 3]

Prints, per command, the best CPU time (user + system) of a fresh interpreter running it, and the heavy
modules found in `sys.modules` afterwards; the bare interpreter with numpy is the floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HEAVY = ("torch", "monai", "onnxruntime", "scipy", "nibabel", "pydicom", "skimage")
COMMANDS = {
    "python -c 'import numpy' (floor)": None,
    "reseg --help": ["--help"],
    "reseg models": ["models"],
    "reseg segment MISSING -o OUT": ["segment", "/nonexistent/scan.tif", "-o", "/tmp/out.tif"],
    "reseg measure MISSING LABELS -o OUT": [
        "measure",
        "/nonexistent/scan.vol",
        "/nonexistent/l.tif",
        "-o",
        "/tmp/m.csv",
    ],
    "reseg export MISSING -o OUT": ["export", "/nonexistent/s.reseg-session.npz", "-o", "/tmp/export"],
    "reseg segment --bad-option": ["segment", "--bad-option"],
}
PROBE = """
import resource, sys
arguments = {arguments!r}
if arguments is None:
    import numpy
else:
    from reseg.cli import main
    try:
        main(arguments)
    except SystemExit:
        pass
usage = resource.getrusage(resource.RUSAGE_SELF)
heavy = [m for m in {heavy!r} if m in sys.modules]
print("RESULT", usage.ru_utime + usage.ru_stime, ",".join(heavy) or "-", file=sys.stderr)
"""


def cpu_seconds(arguments: list[str] | None) -> tuple[float, str]:
    probe = PROBE.format(arguments=arguments, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    line = next(line for line in done.stderr.splitlines() if line.startswith("RESULT"))
    _, seconds, heavy = line.split()
    return float(seconds), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}")
    print(f"{'command':<40} {'CPU s (best)':>12}  heavy modules imported")
    for label, arguments in COMMANDS.items():
        runs = [cpu_seconds(arguments) for _ in range(args.repeats)]
        print(f"{label:<40} {min(s for s, _ in runs):>12.2f}  {runs[0][1]}")


if __name__ == "__main__":
    main()
