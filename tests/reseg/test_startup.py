"""Commands that run no model start fast: they never import torch, MONAI or ONNX Runtime (seconds of CPU on
every `--help`), and the quickest ones not even scipy or nibabel. Each runs in a fresh interpreter, as a user's
shell starts it; `benchmarks/bench_startup.py` prints the CPU seconds."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODEL_LIBRARIES = ("torch", "monai", "onnxruntime")
PROBE = """
import sys
from reseg.cli import main
try:
    main({arguments!r})
except SystemExit:
    pass
print("IMPORTED", ",".join(sorted(m for m in {watched!r} if m in sys.modules)), file=sys.stderr)
"""


def imported(arguments: list[str], watched: tuple[str, ...]) -> tuple[set[str], str]:
    probe = PROBE.format(arguments=arguments, watched=watched)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=120)
    line = next(line for line in done.stderr.splitlines() if line.startswith("IMPORTED"))
    return set(filter(None, line.split(" ", 1)[1].split(","))), done.stderr + done.stdout


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["models"],
        ["segment", "--help"],
        ["segment", "--no-such-option"],
        ["segment", "/nonexistent/scan.tif", "-o", "/tmp/out.tif"],
        ["measure", "/nonexistent/scan.vol", "/nonexistent/labels.tif", "-o", "/tmp/thickness.csv"],
        ["export", "/nonexistent/scan.reseg-session.npz", "-o", "/tmp/export"],
        ["export", "/nonexistent/scan.vol", "--format", "boundaries", "-o", "/tmp/b.csv"],
    ],
    ids=lambda arguments: " ".join(arguments)[:40],
)
def test_commands_that_run_no_model_never_import_the_model_libraries(arguments):
    found, output = imported(arguments, MODEL_LIBRARIES)
    assert not found, f"`reseg {' '.join(arguments)}` imported {found}"
    if arguments[0] != "--help" and "--help" not in arguments:
        assert "reseg" in output, "it still said what was wrong (or listed the models)"


@pytest.mark.parametrize("arguments", [["--help"], ["models"]], ids=" ".join)
def test_help_and_the_model_list_skip_even_scipy_and_nibabel(arguments):
    found, _ = imported(arguments, ("scipy", "nibabel", "pydicom", "skimage"))
    assert not found, f"`reseg {' '.join(arguments)}` imported {found}: a third of a second each"
