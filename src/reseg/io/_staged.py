"""Files that land in a folder together or not at all, even when the writer is killed or the disk fills.

An export writes many files into a folder that may already hold an earlier export. Each file is first
written under a hidden staging folder inside the target (`.reseg-staged-<token>/`, same file system, so the
final moves are renames). Only when every file is complete is `plan.json` written into the staging folder:
that one atomic write is the commit. Then the staged files are renamed into place, the files the plan drops
are removed, and the staging folder goes.

Whoever opens the folder next calls `recover`: a staging folder without a plan was killed before the commit
and is deleted (the folder is as it was before); one with a plan was killed after it, and its moves are
finished (the folder is as the export meant it). Either way no temporary file stays behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from reseg.errors import OutputError
from reseg.io._atomic import output_error, process_running, replace_atomically

STAGING_PREFIX = ".reseg-staged-"
_PLAN = "plan.json"


class StagedFolder:
    """Stage files for `folder` with `path(name)`, then `commit()`; leaving without a commit discards them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.staging = folder / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._names: list[str] = []
        self._new_folder = not folder.exists()  # then a discarded write leaves no empty folder either
        try:
            self.staging.mkdir(parents=True)
        except OSError as error:
            raise output_error(folder, error) from error

    def path(self, name: str) -> Path:
        """Where to write the file that will become `folder/name` (a relative POSIX path of ours)."""
        self._check_inside(name)
        staged = self.staging / name
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise output_error(staged, error) from error
        self._names.append(name)
        return staged

    def commit(self, remove: Sequence[str] = ()) -> None:
        """Make every staged file land, in the order staged (stage an index such as dataset.json last), and
        delete the files named in `remove`."""
        for name in remove:
            self._check_inside(name)
        plan = json.dumps({"files": self._names, "remove": [n for n in remove if n not in self._names]})
        replace_atomically(self.staging / _PLAN, lambda temporary: temporary.write_text(plan, encoding="utf-8"))
        _finish(self.folder, self.staging)

    def _check_inside(self, name: str) -> None:
        try:
            _inside(self.folder, name)
        except ValueError:
            raise OutputError(
                self.folder / name, f"lies outside {self.folder} (a symbolic link leads elsewhere); nothing was written"
            ) from None

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        if self._new_folder:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                self.folder.rmdir()

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.staging.exists() and not (self.staging / _PLAN).exists():
            self.discard()


def recover(folder: Path) -> None:
    """Finish or roll back what killed writers staged in `folder` (see the module's docstring); what a
    running writer stages is left to it."""
    if not folder.is_dir():
        return
    for staging in sorted(folder.glob(f"{STAGING_PREFIX}*")):
        pid = staging.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if not staging.is_dir() or (pid.isdigit() and process_running(int(pid))):
            continue
        if (staging / _PLAN).is_file():
            _finish(folder, staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)


def _finish(folder: Path, staging: Path) -> None:
    try:
        plan = json.loads((staging / _PLAN).read_text(encoding="utf-8"))
        moves = [(_inside(staging, name), _inside(folder, name)) for name in plan["files"]]
        removals = [_inside(folder, name) for name in plan["remove"]]
    except (OSError, ValueError, KeyError, TypeError) as error:  # damaged on disk: never applied in part
        raise OutputError(
            staging, f"holds an unreadable plan of an interrupted write ({error}); remove that folder and run again"
        ) from None
    try:
        for staged, target in moves:
            if staged.exists():  # not yet moved by an earlier, killed attempt
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        for target in removals:
            target.unlink(missing_ok=True)
    except OSError as error:
        raise output_error(folder, error) from error
    shutil.rmtree(staging, ignore_errors=True)


def _inside(folder: Path, name: str) -> Path:
    if not isinstance(name, str) or not (folder / name).resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"{name!r} leads outside {folder}")
    return folder / name
