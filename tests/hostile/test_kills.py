"""`reseg export` and `reseg segment` killed (SIGKILL) at random moments, and run out of room: the folder is
always whole (the dataset lists exactly what it holds, every file reads), the next run succeeds without
--overwrite, and afterwards no temporary file is left.

"Out of room" is a file-size limit (RLIMIT_FSIZE) on the command's process: writes beyond it fail with EFBIG
as they would with ENOSPC on a full disk, without needing one.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile

from reseg.classes import OCT_CLASSES
from reseg.io import read_volume
from reseg.io._staged import recover
from reseg.review.session import save_session, session_path_for, start_session
from reseg.review.state import SliceStatus

pytestmark = pytest.mark.corpus

RESEG = str(Path(sys.executable).with_name("reseg"))
KILLS = 8
RNG = np.random.default_rng(11)


def _session(folder: Path, slices: int, shape: tuple[int, int] = (160, 192), name: str = "scan") -> Path:
    folder.mkdir(parents=True)
    scan = folder / f"{name}.tif"
    tifffile.imwrite(scan, RNG.integers(0, 200, (slices, *shape)).astype(np.uint8), photometric="minisblack")
    session = start_session(read_volume(scan), np.ones((slices, *shape), np.uint8), list(OCT_CLASSES), "test")
    for index in range(slices):
        session.review.mark(index, SliceStatus.REVIEWED)
    return save_session(session_path_for(scan), session)


def _kill_after(command: list[str], seconds: float) -> bool:
    """Run `command` and SIGKILL it after `seconds`; True when it was killed, False when it had finished."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _assert_whole(folder: Path) -> int:
    """The export folder holds exactly what its dataset.json lists, each file readable; returns the count."""
    hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []
    assert not hidden, hidden  # no staging folder, no temporary file
    if not (folder / "dataset.json").exists():
        visible = (
            [p for p in folder.rglob("*") if p.is_file() and ".reseg-staged-" not in str(p)] if folder.exists() else []
        )
        assert not visible, f"files without a dataset.json: {visible}"
        return 0
    manifest = json.loads((folder / "dataset.json").read_text())
    listed = {item[key] for item in manifest["items"] for key in ("image", "label")}
    boundaries = {item["boundaries"] for item in manifest["items"]}  # OCT sessions: one file per B-scan
    on_disk = {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not str(p.relative_to(folder)).startswith(".")
    } - {"dataset.json"}
    assert on_disk == listed | boundaries
    for name in listed:
        assert read_volume(folder / name).data.shape[1:] == (160, 192)
    for name in boundaries:
        assert json.loads((folder / name).read_text())["shape"] == [1, 192]
    return len(manifest["items"])


def test_killed_exports_leave_a_whole_folder_and_the_next_export_completes(tmp_path):
    session = _session(tmp_path / "scan", slices=60)
    duration = _timed([RESEG, "export", str(session), "-o", str(tmp_path / "timing")])
    outcomes: Counter[str] = Counter()
    for attempt in range(KILLS):
        folder = tmp_path / f"export{attempt}"
        if attempt % 2:  # half of them into a folder that already holds an earlier export
            other = _session(tmp_path / f"other{attempt}", 3, name="other")
            subprocess.run([RESEG, "export", str(other), "-o", str(folder)], check=True, capture_output=True)
        killed = _kill_after(
            [RESEG, "export", str(session), "-o", str(folder)], RNG.uniform(0.4 * duration, duration + 0.1)
        )
        staged = list(folder.glob(".reseg-staged-*")) if folder.exists() else []
        outcomes[
            "finished first"
            if not killed
            else "killed after the commit"
            if any((s / "plan.json").exists() for s in staged)
            else "killed while staging"
            if staged
            else "killed before writing"
        ] += 1
        # As the next opener sees it: a kill during the renames after the commit leaves landed files that the
        # old dataset.json does not list yet, until `recover` finishes the moves (every writer and export calls it).
        recover(folder)
        _assert_whole(folder)
        rerun = subprocess.run([RESEG, "export", str(session), "-o", str(folder)], capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert _assert_whole(folder) == 60 + (3 if attempt % 2 else 0)
    print(f"\nexport kills (an export takes {duration:.1f} s here): {dict(outcomes)}")
    assert outcomes["finished first"] <= KILLS // 2


def test_killed_segmentations_leave_no_partial_output_and_the_next_run_succeeds(tmp_path):
    scan = tmp_path / "scan.tif"
    tifffile.imwrite(scan, RNG.integers(0, 200, (6, 224, 256)).astype(np.uint8), photometric="minisblack")
    output = tmp_path / "out" / "labels.tif"
    output.parent.mkdir()
    command = [RESEG, "segment", str(scan), "-o", str(output)]
    duration = _timed(command)
    output.unlink()
    killed = 0
    for _ in range(KILLS // 2):
        killed += _kill_after(command, RNG.uniform(0.3, duration))
        if output.exists():
            assert read_volume(output).data.shape == (6, 224, 256)  # whole, or not there at all
        subprocess.run(command, check=True, capture_output=True)
        assert read_volume(output).data.shape == (6, 224, 256)
        assert [p.name for p in output.parent.iterdir()] == ["labels.tif"]  # a killed run's temporary is gone
    print(f"\nsegment: {killed} of {KILLS // 2} killed (a run takes {duration:.1f} s here)")
    assert killed >= 1


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _out_of_room(command: list[str], limit: int) -> str:
    result = subprocess.run(command, capture_output=True, text=True, preexec_fn=_limit_file_size(limit))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after any progress bars
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [last] and "no space left" in last and "Traceback" not in result.stderr, result.stderr
    return last


def test_no_room_is_one_line_and_nothing_half_written(tmp_path):
    session = _session(tmp_path / "scan", slices=3)
    folder = tmp_path / "export"
    line = _out_of_room([RESEG, "export", str(session), "-o", str(folder)], limit=20_000)
    assert line.startswith(f"reseg: error: {folder}: the export cannot be written")
    assert not folder.exists()  # as before the export

    scan = session.parent / "scan.tif"
    output = tmp_path / "out" / "labels.tif"
    output.parent.mkdir()
    line = _out_of_room([RESEG, "segment", str(scan), "-o", str(output)], limit=20_000)
    assert line.startswith(f"reseg: error: {output}: cannot be written: no space left")
    assert list(output.parent.iterdir()) == []

    phantoms = tmp_path / "phantoms"
    subprocess.run(
        [RESEG, "phantom", str(phantoms), "--volumes", "2", "--bscans", "2", "--height", "224", "--width", "128"],
        check=True,
        capture_output=True,
    )
    models = tmp_path / "models"
    line = _out_of_room(
        [
            RESEG,
            "train",
            str(phantoms),
            "--name",
            "tiny",
            "-o",
            str(models),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch-size",
            "1",
            "--crop",
            "64",
            "64",
        ],
        limit=1_000_000,
    )
    assert line.startswith(f"reseg: error: {models / 'tiny.safetensors'}: cannot be written: no space left")
    assert not models.exists() or list(models.iterdir()) == []
