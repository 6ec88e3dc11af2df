"""Atomic replacement of a file: the one way every writer of the engine puts a file on disk."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from reseg.errors import OutputError

# A write that fails for one of these has no room: the disk, the user's quota, or the process's file size limit.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_TEMPORARY = ".{pid}-{token}.tmp.{name}"
_NEARLY_FULL_BYTES = 16 * 2**20


def replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see a half-written target.

    The temporary name ends with the target's name so that libraries choose the same format, and carries the
    writer's process id, so that what a killed writer left is recognised and removed by the next write. A
    full disk or a folder without write permission is an OutputError naming the target; the target is then
    unchanged and no temporary file is left.
    """
    temporary = temporary_beside(target)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise output_error(target, error) from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def temporary_beside(target: Path) -> Path:
    """A fresh temporary name for `target` in its folder, after removing those that killed writers left."""
    remove_abandoned_temporaries(target)
    return target.with_name(_TEMPORARY.format(pid=os.getpid(), token=uuid.uuid4().hex[:12], name=target.name))


def output_error(target: Path, error: OSError) -> OutputError:
    """What a failed write means for the user, in one line."""
    if error.errno in _NO_SPACE:
        room: str | None = os.strerror(error.errno)
    else:  # no errno: a library found the write short itself; another errno: not for lack of room
        room = _short_of_room(target) if error.errno is None else None
    if room is not None:
        return OutputError(
            target, f"cannot be written: no space left ({room}); nothing was changed. Free some space and run again"
        )
    if isinstance(error, PermissionError):
        return OutputError(target, "cannot be written: permission denied; choose a folder you can write to")
    return OutputError(target, f"cannot be written ({error.strerror or error})")


def _short_of_room(target: Path) -> str | None:
    """Why a write came up short without an error number (libraries such as tifffile check the count written
    themselves), if it was for room: the disk nearly full, or a file size limit on this process."""
    try:
        if shutil.disk_usage(target.parent).free < _NEARLY_FULL_BYTES:
            return "the disk is full"
    except OSError:
        pass
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return f"files may not exceed {soft} bytes here (a file size limit)" if soft != resource.RLIM_INFINITY else None


def remove_abandoned_temporaries(target: Path) -> None:
    """Delete the temporary files of `target` whose writer process no longer runs (it was killed)."""
    try:
        candidates = list(target.parent.glob(f".*-*.tmp.{glob.escape(target.name)}"))
    except OSError:
        return
    for candidate in candidates:
        pid = candidate.name[1:].split("-", 1)[0]
        if pid.isdigit() and not process_running(int(pid)):
            candidate.unlink(missing_ok=True)


def process_running(pid: int) -> bool:
    """Whether a process with this id runs (this one included): its temporary files are in use."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
