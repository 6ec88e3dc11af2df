"""Review sessions: exact round trip, where they are kept, no stale restore, and autosave surviving SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from reseg.classes import OCT_CLASSES
from reseg.data.phantom import make_oct_phantom
from reseg.errors import InputError
from reseg.io import Volume, read_volume, write_image
from reseg.review.session import find_session, load_session, save_session, session_path_for, start_session


@pytest.fixture
def scan(tmp_path) -> Path:
    phantom = make_oct_phantom(n_bscans=4, height=224, width=128, seed=3)
    volume = Volume(phantom.image, phantom.spacing, "OCT", metadata={"spacing_known": (True, True, True)})
    return write_image(tmp_path / "eye.tif", volume)


def _session(scan: Path):
    volume = read_volume(scan)
    prediction = make_oct_phantom(n_bscans=4, height=224, width=128, seed=3).labels
    session = start_session(
        volume,
        prediction,
        list(OCT_CLASSES),
        "lightreseg-oct",
        "ab" * 32,
        confidence=np.array([0.9, 0.4, 0.7, 0.8]),
        reviewer="grader",
    )
    session.labels[1, 100:120, 10:50] = 9
    session.review.mark(1, "reviewed")
    session.review.mark(2, "skipped", reviewer="someone else")
    return session


def test_round_trip_keeps_arrays_and_metadata(scan):
    session = _session(scan)
    path = save_session(session_path_for(scan), session)
    assert path == scan.parent / "eye.tif.reseg-session.npz" and session.saved is not None
    loaded = load_session(path)
    for name in ("labels", "prediction", "confidence"):
        original, restored = getattr(session, name), getattr(loaded, name)
        assert restored.dtype == original.dtype and np.array_equal(restored, original), name
    assert loaded.review.to_dict() == session.review.to_dict()
    assert loaded.review.slices[1].reviewer == "grader" and loaded.review.slices[2].reviewer == "someone else"
    for name in (
        "classes",
        "spacing",
        "source",
        "source_sha256",
        "modality",
        "model_name",
        "weights_sha256",
        "created",
        "saved",
        "spacing_known",
    ):
        assert getattr(loaded, name) == getattr(session, name), name
    assert np.load(path)["labels"].shape == (4, 224, 128)  # a plain .npz to numpy as well


def test_session_goes_to_the_user_data_folder_when_the_scan_folder_is_read_only(scan, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != scan.parent and real_access(path, mode))
    path = session_path_for(scan)
    assert path.parent == tmp_path / "data" / "napari-reseg" / "sessions"
    assert path.name.startswith("eye.tif-") and path.name.endswith(".reseg-session.npz")
    twin = tmp_path / "elsewhere" / "eye.tif"
    assert session_path_for(twin) != path  # keyed by the absolute path, not only the name
    save_session(path, _session(scan))
    assert find_session(scan).path == path


def test_find_session_offers_only_a_session_of_the_same_scan_content(scan):
    lookup = find_session(scan)
    assert not lookup and lookup.path is None and "no saved session" in lookup.message
    path = save_session(session_path_for(scan), _session(scan))
    lookup = find_session(scan)
    assert lookup and lookup.path == path and "1 / 4 slices reviewed" in lookup.message

    changed = read_volume(scan)
    changed.data[0, 0, 0] ^= 1
    write_image(scan, changed)
    lookup = find_session(scan)
    assert not lookup and lookup.stale == path and "different version" in lookup.message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign zip"])
def test_a_corrupt_session_file_is_an_input_error_naming_it(scan, damage):
    path = save_session(session_path_for(scan), _session(scan))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a session at all")
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("session.json", '{"format": "something else"}')
    with pytest.raises(InputError, match=str(path)):
        load_session(path)
    with pytest.raises(InputError, match=str(path)):
        find_session(scan)


# Saves a session in a loop; save i holds labels drawn with seed i and says "save i" as the model name.
# Prints i once save i has returned, i.e. once the file on disk is complete.
_AUTOSAVER = """
import sys
from pathlib import Path
import numpy as np
from reseg.classes import OCT_CLASSES
from reseg.review.state import ReviewState
from reseg.review.session import Session, save_session

path = Path(sys.argv[1])
shape = (8, 256, 512)
for i in range(10_000):
    labels = np.random.default_rng(i).integers(0, 10, shape, dtype=np.uint8)
    session = Session(labels, labels, ReviewState.new(shape[0], "autosaver"), list(OCT_CLASSES), (1.0, 1.0, 1.0),
                      Path("scan.tif"), "0" * 64, model_name=f"save {i}")
    save_session(path, session)
    print(i, flush=True)
"""


def _autosave_and_kill(path: Path) -> tuple[int, bool]:
    """Run the autosaver, SIGKILL it while a save is being written; the last completed save, and whether the
    kill landed mid-write (a temporary file was left behind)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", _AUTOSAVER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    try:
        completed = [int(child.stdout.readline()) for _ in range(3)]
        while not list(path.parent.glob(f".*.tmp.{path.name}")) and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        completed += [int(line) for line in child.stdout.read().split()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    leftovers = list(path.parent.glob(f".*.tmp.{path.name}"))
    for leftover in leftovers:
        leftover.unlink()
    return completed[-1], bool(leftovers)


def test_autosave_survives_a_killed_process(tmp_path):
    path = tmp_path / "scan.tif.reseg-session.npz"
    killed_mid_write = False
    for _ in range(3):  # the kill lands mid-write almost always; retry the rare time the write just finished
        last, killed_mid_write = _autosave_and_kill(path)
        session = load_session(path)
        saved = int(session.model_name.split()[1])
        assert saved in (last, last + 1)  # the last completed save, or one that completed as it was killed
        expected = np.random.default_rng(saved).integers(0, 10, session.labels.shape, dtype=np.uint8)
        assert np.array_equal(session.labels, expected) and np.array_equal(session.prediction, expected)
        if killed_mid_write:
            break
    assert killed_mid_write
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_chosen_session_folder_keeps_and_finds_the_session(scan, tmp_path):
    folder = tmp_path / "graders' sessions"
    path = save_session(session_path_for(scan, folder), _session(scan))
    assert path.parent == folder and path.name.startswith("eye.tif-")  # keyed by the scan's absolute path
    assert find_session(scan, folder).path == path
    assert not find_session(scan).path  # not beside the scan, not in the user data folder


def test_a_rerun_replaces_the_prediction_and_clears_the_marks_of_its_slices(scan):
    session = _session(scan)
    rerun = np.zeros_like(session.prediction)
    session.model_rerun([1], rerun, "lightreseg-oct-finetuned", "cd" * 32)
    assert not session.prediction[1].any() and session.prediction[0].any()  # only the slice that ran again
    assert session.review.slices[1].status.value == "unreviewed"
    assert session.review.slices[2].status.value == "skipped"  # untouched slices keep their marks
    assert session.model_name == "lightreseg-oct-finetuned"


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("version", lambda h: h.update(version="one")),
        ("spacing[0]", lambda h: h.update(spacing=[float("nan"), 1.0, 1.0])),
        ("spacing[1]", lambda h: h.update(spacing=[1.0, 0.0, 1.0])),
        ("shape", lambda h: h.update(shape="4x224x128")),
        ("classes", lambda h: h.update(classes=[])),
        ("review.slices", lambda h: h["review"].update(slices=[])),
        ("review.slices[0].status", lambda h: h["review"]["slices"][0].update(status="approved")),
        ("model", lambda h: h.update(model="lightreseg-oct")),
        ("spacing_known", lambda h: h.update(spacing_known=[1, 0, 1])),
    ],
)
def test_a_damaged_session_header_names_the_file_and_the_field(scan, field, edit):
    path = save_session(session_path_for(scan), _session(scan))
    _edit_header(path, edit)
    with pytest.raises(InputError) as refused:
        load_session(path)
    assert str(refused.value).startswith(f"{path}: is a damaged session file: its header's field '{field}' ")


def _edit_header(path: Path, edit) -> None:
    """Rewrite a saved session's session.json through `edit(header)`, its arrays as they were."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["session.json"])
    edit(header)
    members["session.json"] = json.dumps(header).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_session_keeps_whether_the_scan_recorded_its_spacing(scan, tmp_path):
    """A stack that records no spacing reads with 1.0 mm placeholders: its session says they are not known."""
    plain = tmp_path / "plain" / "eye.tif"
    plain.parent.mkdir()
    tifffile.imwrite(plain, read_volume(scan).data, photometric="minisblack")
    unknown = _session(plain)
    assert unknown.spacing == (1.0, 1.0, 1.0) and unknown.spacing_known == (False, False, False)
    assert unknown.axial_spacing_mm is None
    restored = load_session(save_session(session_path_for(plain), unknown))
    assert restored.spacing_known == (False, False, False) and restored.axial_spacing_mm is None
    known = load_session(save_session(session_path_for(scan), _session(scan)))
    assert known.spacing_known == (True, True, True)
    assert known.axial_spacing_mm == pytest.approx(make_oct_phantom(n_bscans=1, seed=3).spacing[1])


@pytest.mark.parametrize(("spacing", "axial"), [([0.12, 0.0039, 0.0113], 0.0039), ([1.0, 1.0, 1.0], None)])
def test_a_session_saved_before_spacing_flags_still_loads(scan, spacing, axial):
    """Older sessions lack "spacing_known": a spacing counts as recorded unless it is the 1.0 mm placeholder."""
    path = save_session(session_path_for(scan), _session(scan))

    def as_older(header: dict) -> None:
        del header["spacing_known"]
        header["spacing"] = spacing

    _edit_header(path, as_older)
    loaded = load_session(path)
    assert loaded.spacing_known is None and loaded.spacing == tuple(spacing)
    assert loaded.axial_spacing_mm == (None if axial is None else pytest.approx(axial))
    assert loaded.review.slices[1].status.value == "reviewed"  # the rest of it as saved
