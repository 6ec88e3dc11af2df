"""Training-set folders: written whole or not at all, and read back as the scans that went in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reseg.data.dataset import load_training_set, write_training_set
from reseg.errors import InputError

SPACING = (0.1, 0.004, 0.01)


def _scans(count: int, fail_after: int | None = None):
    rng = np.random.default_rng(0)
    for index in range(count):
        if index == fail_after:
            raise ValueError("the retina does not fit")  # as the phantom says when asked for too small a volume
        image = rng.integers(0, 255, (2, 32, 24), np.uint8)
        yield f"scan_{index}", image, np.ones_like(image), SPACING


def test_written_scans_read_back_with_their_spacing(tmp_path: Path) -> None:
    folder = write_training_set(tmp_path / "set", _scans(2), "OCT", "test")
    training_set = load_training_set([folder])
    assert sorted(scan.name for scan in training_set.scans) == ["set/scan_0", "set/scan_1"]
    assert training_set.scans[0].spacing == pytest.approx(SPACING)
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "images", "labels"]


def test_a_scan_that_cannot_be_made_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        write_training_set(tmp_path / "set", _scans(3, fail_after=2), "OCT", "test")
    assert list(tmp_path.iterdir()) == []


def test_what_a_killed_write_left_is_rolled_back_by_the_next(tmp_path: Path) -> None:
    left = tmp_path / "set" / ".reseg-staged-999999999-0000abcd" / "images"  # a process id that is not running
    left.mkdir(parents=True)
    (left / "scan_0.tif").write_bytes(b"half a file")
    folder = write_training_set(tmp_path / "set", _scans(1), "OCT", "test")
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "images", "labels"]


def test_a_folder_with_other_files_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_training_set(tmp_path / "set", _scans(1), "OCT", "test")
    assert [p.name for p in (tmp_path / "set").iterdir()] == ["notes.txt"]
