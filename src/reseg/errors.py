"""Errors a user can meet. Each message names the file or input and what is wrong with it.

They survive pickling with their fields (`__reduce__`), so an error raised in another process (napari-reseg
runs models in an engine process) reaches the user as the same error.
"""

from __future__ import annotations

from pathlib import Path


class ResegError(Exception):
    """Base class: the message is complete and meant for the user, without a traceback."""


class _FileProblem(ResegError):
    """A problem with one file or input: `source` names it, `problem` says what is wrong."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):
        return type(self), (self.source, self.problem)


class InputError(_FileProblem):
    """An input file or array that cannot be used (missing, unreadable, wrong shape, RGB, NaN, empty)."""


class OutputError(_FileProblem):
    """An output that cannot be written (a full disk, no permission); nothing half-written is left behind."""


class ExportClash(InputError):
    """An export would replace what an earlier, different export wrote there; allowed only when asked to overwrite."""


class CheckpointError(_FileProblem):
    """A model checkpoint or card that cannot be loaded (corrupt, wrong architecture keys, wrong class count)."""


class DeviceMemoryError(ResegError):
    """A model that does not fit on its device even one slice at a time."""

    def __init__(self, device: str) -> None:
        self.device = device
        super().__init__(
            f"the model does not fit in the memory of {device} even at batch size 1; choose the CPU "
            "or close what else uses the device"
        )

    def __reduce__(self):
        return type(self), (self.device,)
