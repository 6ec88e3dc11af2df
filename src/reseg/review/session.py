"""Crash-safe review sessions: the corrected labels, the model's prediction and the review state of one scan.

A session is autosaved while a grader works, so a crash or a killed process loses at most the edits made
since the last save, and reopening the scan offers to restore it.

File format: one ZIP file named `<scan name>.reseg-session.npz` (numpy's .npz layout, so `numpy.load` opens
it too) holding

- `session.json`: {"format": "reseg-session", "version": 1, "source", "source_sha256", "modality",
  "spacing" (z, y, x mm), "spacing_known" (z, y, x: whether the scan recorded each; optional), "classes"
  (index, name, colour), "model": {"name", "weights_sha256"}, "review" (`ReviewState.to_dict`), "created",
  "saved" (ISO 8601, UTC), "shape"};
- `labels.npy` and `prediction.npy`: uint8 (Z, Y, X), the grader's corrections and the model's output;
- `confidence.npy` (optional): float32 (Z,), the model's confidence per slice.

"spacing_known" came after version 1 was fixed; readers pass over keys they do not know, so the version stays 1.
A session without it (older, or made by code that does not say) takes a spacing as recorded unless it is exactly
1.0 mm, the placeholder every reader puts where a file records none: a genuine 1.0 mm spacing of such a session
is then taken as unknown, and exports write null for it rather than let a placeholder pass for a measurement.

Every save writes a temporary file beside the target, fsyncs it and renames it over the target, so the file
on disk is always a complete earlier or later save, never a mix. A killed save can leave a hidden
`.<pid>-<token>.tmp.<name>` file behind; it is never read, and the next save removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

from reseg.classes import SegmentationClass
from reseg.errors import InputError
from reseg.fields import FieldProblem, require_classes, require_mapping, require_number, require_numbers, require_text
from reseg.io import Volume, reading, replace_atomically, three_spacings
from reseg.review.state import ReviewState, SliceStatus, now_iso
from reseg.zoo.cards import sha256_of

SESSION_SUFFIX = ".reseg-session.npz"
SESSION_FORMAT = "reseg-session"
SESSION_VERSION = 1
_HEADER = "session.json"
_ARRAYS = ("labels", "prediction", "confidence")
_REQUIRED_ARRAYS = _ARRAYS[:2]
PLACEHOLDER_SPACING = 1.0  # mm: what readers put for a spacing the file does not record


@dataclass
class Session:
    """The review of one scan: everything needed to resume it, and to export it with its provenance."""

    labels: np.ndarray  # uint8 (Z, Y, X): the grader's corrected labels
    prediction: np.ndarray  # uint8 (Z, Y, X): what the model produced, to measure the edits against
    review: ReviewState
    classes: list[SegmentationClass]
    spacing: tuple[float, float, float]  # (z, y, x) in mm
    source: Path  # the scan
    source_sha256: str  # of the scan when the session started: a changed scan must not get these labels
    modality: str = "unknown"
    model_name: str | None = None
    weights_sha256: str | None = None
    confidence: np.ndarray | None = None  # float32 (Z,): per-slice model confidence, for "least confident"
    created: str = field(default_factory=now_iso)
    saved: str | None = None
    spacing_known: tuple[bool, bool, bool] | None = None  # which of `spacing` the scan recorded; None: not said

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def recorded_spacing(self) -> tuple[bool, bool, bool]:
        """Which of `spacing` (z, y, x) the scan recorded; where the session does not say, every spacing but the
        1.0 mm placeholder (see the module docstring)."""
        if self.spacing_known is not None:
            return self.spacing_known
        z, y, x = (spacing != PLACEHOLDER_SPACING for spacing in self.spacing)
        return z, y, x

    @property
    def axial_spacing_mm(self) -> float | None:
        """The B-scan's axial (y) pixel size in mm, None when the scan did not record it (exports write null)."""
        return self.spacing[1] if self.recorded_spacing[1] else None

    def model_rerun(
        self,
        slices: list[int],
        prediction: np.ndarray,
        model_name: str,
        weights_sha256: str | None,
        confidence: np.ndarray | None = None,
    ) -> None:
        """A model ran again over `slices` (the labels already hold its output): their prediction becomes the
        new output and their review marks are cleared, since what was reviewed is no longer there."""
        for z in slices:
            self.prediction[z] = prediction[z]
            self.review.mark(z, SliceStatus.UNREVIEWED)
        self.model_name, self.weights_sha256 = model_name, weights_sha256
        if confidence is not None:
            self.confidence = np.asarray(confidence, dtype=np.float32)


def scan_sha256(path: str | Path) -> str:
    """The scan's content hash: of the file, or for a folder (DICOM series, slices) of its visible files."""
    path = Path(path)
    if not path.is_dir():
        return sha256_of(path)
    digest = hashlib.sha256()
    for file in sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")):
        digest.update(f"{file.name}\0{sha256_of(file)}\n".encode())
    return digest.hexdigest()


def start_session(
    volume: Volume,
    prediction: np.ndarray,
    classes: list[SegmentationClass],
    model_name: str | None = None,
    weights_sha256: str | None = None,
    confidence: np.ndarray | None = None,
    reviewer: str | None = None,
) -> Session:
    """A fresh session for a scan just segmented: the corrections start as a copy of the prediction."""
    if not volume.source.exists():
        raise InputError(volume.source, "a session needs the scan file it reviews; this one does not exist")
    prediction = np.asarray(prediction, dtype=np.uint8)
    z, y, x = (bool(known) for known in volume.metadata.get("spacing_known", (False, False, False)))
    return Session(
        labels=prediction.copy(),
        prediction=prediction,
        review=ReviewState.new(len(prediction), reviewer),
        classes=list(classes),
        spacing=volume.spacing,
        source=volume.source.resolve(),
        source_sha256=scan_sha256(volume.source),
        modality=volume.modality,
        model_name=model_name,
        weights_sha256=weights_sha256,
        confidence=None if confidence is None else np.asarray(confidence, np.float32),
        spacing_known=(z, y, x),
    )


def save_session(path: str | Path, session: Session) -> Path:
    """Write the session atomically (temporary file, fsync, rename): a crash leaves the previous save whole."""
    path = Path(path)
    problem = _array_problem(session.labels, session.prediction, session.confidence, len(session.review))
    if problem:
        raise ValueError(f"cannot save the session to {path}: {problem}")
    saved = now_iso()
    header = json.dumps(
        {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "source": str(session.source),
            "source_sha256": session.source_sha256,
            "modality": session.modality,
            "spacing": list(session.spacing),
            "spacing_known": None if session.spacing_known is None else list(session.spacing_known),
            "classes": [c.to_dict() for c in session.classes],
            "model": {"name": session.model_name, "weights_sha256": session.weights_sha256},
            "review": session.review.to_dict(),
            "created": session.created,
            "saved": saved,
            "shape": list(session.labels.shape),
        },
        indent=1,
    )
    confidence = None if session.confidence is None else session.confidence.astype(np.float32, copy=False)
    arrays = {"labels": session.labels, "prediction": session.prediction, "confidence": confidence}

    def write(temporary: Path) -> None:
        # Level 1 deflate: label maps shrink ~100x and a 49-B-scan volume saves in ~50 ms.
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.writestr(_HEADER, header)
            for name, array in arrays.items():
                if array is not None:
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, write)
    session.saved = saved
    return path


def load_session(path: str | Path) -> Session:
    """Read a session file; a missing, corrupt or foreign file is an InputError naming it."""
    path = Path(path)
    header = read_session_header(path)
    with reading(path, "a reseg session"):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [f"{name}.npy" for name in _REQUIRED_ARRAYS if f"{name}.npy" not in names]
            if missing:
                raise InputError(path, f"is a damaged session file: it lacks {', '.join(missing)}")
            arrays = {name: _read_array(archive, f"{name}.npy") for name in _ARRAYS if f"{name}.npy" in names}
        review = ReviewState.from_dict(header["review"])
        session = Session(
            labels=arrays["labels"],
            prediction=arrays["prediction"],
            review=review,
            classes=[SegmentationClass.from_dict(c) for c in header["classes"]],
            spacing=three_spacings(header["spacing"]),
            source=Path(header["source"]),
            source_sha256=header["source_sha256"],
            modality=header.get("modality", "unknown"),
            model_name=header["model"]["name"],
            weights_sha256=header["model"]["weights_sha256"],
            confidence=arrays.get("confidence"),
            created=header["created"],
            saved=header.get("saved"),
            spacing_known=_known_flags(header.get("spacing_known")),
        )
    problem = _array_problem(session.labels, session.prediction, session.confidence, len(review))
    if problem:
        raise InputError(path, problem)
    if list(session.labels.shape) != header["shape"]:
        raise InputError(path, f"holds labels of shape {session.labels.shape} but says {tuple(header['shape'])}")
    return session


def read_session_header(path: str | Path) -> dict[str, Any]:
    """Only the JSON part of a session file: cheap enough to check every scan that is opened."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "session file not found")
    with reading(path, "a reseg session"):
        with zipfile.ZipFile(path) as archive:
            header = json.loads(archive.read(_HEADER))
    if not isinstance(header, dict) or header.get("format") != SESSION_FORMAT:
        raise InputError(path, f"is not a reseg session file (no '{SESSION_FORMAT}' header)")
    try:
        version = require_number(header.get("version"), "version", low=1, integer=True)
        if version > SESSION_VERSION:
            raise InputError(
                path,
                f"was written by a newer napari-reseg (session version {version:g}); update napari-reseg to open it",
            )
        _check_header(header)
    except FieldProblem as problem:
        raise InputError(path, f"is a damaged session file: its header's {problem}") from None
    return header


def _check_header(header: dict[str, Any]) -> None:
    """Every field of a session header that restoring or exporting the session uses."""
    for key in ("source", "source_sha256", "created"):
        require_text(header, key)
    require_text(header, "modality", optional=True)
    require_text(header, "saved", optional=True)
    require_numbers(header.get("spacing"), "spacing", lengths=(3,), above=0)
    known = header.get("spacing_known")
    flags = isinstance(known, list) and len(known) == 3 and all(isinstance(k, bool) for k in known)
    if known is not None and not flags:
        raise FieldProblem("spacing_known", f"must be 3 true/false values (z, y, x) or absent, not {known!r}")
    require_numbers(header.get("shape"), "shape", lengths=(3,), low=1, integer=True)
    require_classes(header.get("classes"), "classes")
    model = require_mapping(header.get("model"), "model")
    require_text(model, "name", optional=True, where="model.name")
    require_text(model, "weights_sha256", optional=True, where="model.weights_sha256")
    review = require_mapping(header.get("review"), "review")
    slices = review.get("slices")
    if not isinstance(slices, list) or len(slices) != header["shape"][0]:
        raise FieldProblem("review.slices", f"must list one review per slice ({header['shape'][0]})")
    statuses = {status.value for status in SliceStatus}
    for i, entry in enumerate(slices):
        if not isinstance(entry, dict) or entry.get("status") not in statuses:
            raise FieldProblem(f"review.slices[{i}].status", f"must be one of {', '.join(sorted(statuses))}")


def _known_flags(value: list[bool] | None) -> tuple[bool, bool, bool] | None:
    """A checked header's "spacing_known" as a tuple (None where the session does not say)."""
    return None if value is None else (bool(value[0]), bool(value[1]), bool(value[2]))


def _read_array(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(name) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _array_problem(
    labels: np.ndarray, prediction: np.ndarray, confidence: np.ndarray | None, n_slices: int
) -> str | None:
    """What is inconsistent between a session's arrays and its review state, if anything."""
    if labels.ndim != 3 or labels.dtype != np.uint8 or prediction.dtype != np.uint8:
        return (
            f"labels and prediction must be uint8 (Z, Y, X); got labels {labels.dtype} {labels.shape} and "
            f"prediction {prediction.dtype} {prediction.shape}"
        )
    if prediction.shape != labels.shape or n_slices != len(labels):
        return f"labels {labels.shape}, prediction {prediction.shape} and review state ({n_slices} slices) do not match"
    if confidence is not None and confidence.shape != (len(labels),):
        return f"confidence has shape {confidence.shape}; one value per slice ({len(labels)}) is expected"
    return None


def _session_candidates(scan_path: str | Path, folder: Path | None = None) -> tuple[Path, ...]:
    """Where a scan's session may be: in `folder` (the user's choice) if given, beside the scan, and in the
    user data folder; outside the scan's folder the name carries a key of the scan's absolute path."""
    scan = Path(scan_path).resolve()
    key = hashlib.sha256(str(scan).encode()).hexdigest()[:16]
    keyed = f"{scan.name}-{key}{SESSION_SUFFIX}"
    user_folder = Path(platformdirs.user_data_dir("napari-reseg")) / "sessions"
    chosen = (Path(folder).expanduser() / keyed,) if folder is not None else ()
    return (*chosen, scan.parent / f"{scan.name}{SESSION_SUFFIX}", user_folder / keyed)


def session_path_for(scan_path: str | Path, folder: Path | None = None) -> Path:
    """Where a scan's session is saved: in `folder` if given, else beside the scan if that folder is writable,
    else in the user data folder."""
    candidates = _session_candidates(scan_path, folder)
    if folder is not None:
        return candidates[0]
    beside, in_user_folder = candidates
    return beside if os.access(beside.parent, os.W_OK | os.X_OK) else in_user_folder


@dataclass(frozen=True)
class SessionLookup:
    """What `find_session` found for a scan. True when there is a session to offer for restoring."""

    path: Path | None  # a session saved for this very scan content: safe to restore
    stale: Path | None  # a session saved for other content at the scan's path: its labels do not fit
    message: str

    def __bool__(self) -> bool:
        return self.path is not None


def find_session(scan_path: str | Path, folder: Path | None = None) -> SessionLookup:
    """Look for a saved session of a scan: in `folder` (the user's session folder) if given, beside the scan,
    or in the user data folder.

    A session is offered only if the scan's sha256 still equals the one it was saved for: labels corrected
    on an earlier version of a file must not be laid over a changed one. A corrupt session file raises
    InputError naming it, so that the caller can tell the user instead of silently starting afresh.
    """
    scan = Path(scan_path)
    existing = [path for path in _session_candidates(scan, folder) if path.is_file()]
    if not existing:
        return SessionLookup(None, None, f"no saved session for {scan.name}")
    digest = scan_sha256(scan)
    headers = {path: read_session_header(path) for path in existing}
    matching = [path for path, header in headers.items() if header["source_sha256"] == digest]
    if matching:
        path = max(matching, key=lambda p: headers[p].get("saved") or "")
        header = headers[path]
        return SessionLookup(
            path,
            None,
            f"session of {scan.name} saved {header.get('saved')}: "
            f"{ReviewState.from_dict(header['review']).progress_text()}",
        )
    stale = existing[0]
    return SessionLookup(
        None,
        stale,
        f"{stale} was saved for a different version of {scan.name} (its sha256 has changed since); it is not restored",
    )
