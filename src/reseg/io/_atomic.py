"""Atomic replacement of a file: the one way every writer of the engine puts a file on disk."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see a half-written target.

    The temporary name ends with the target's name so that libraries choose the same format.
    """
    temporary = target.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{target.name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
