"""Errors a user can meet. Each message names the file or input and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class ResegError(Exception):
    """Base class: the message is complete and meant for the user, without a traceback."""


class InputError(ResegError):
    """An input file or array that cannot be used (missing, unreadable, wrong shape, RGB, NaN, empty)."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ExportClash(InputError):
    """An export would replace what an earlier, different export wrote there; allowed only when asked to overwrite."""


class CheckpointError(ResegError):
    """A model checkpoint or card that cannot be loaded (corrupt, wrong architecture keys, wrong class count)."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class DeviceMemoryError(ResegError):
    """A model that does not fit on its device even one slice at a time."""

    def __init__(self, device: str) -> None:
        self.device = device
        super().__init__(f"the model does not fit in the memory of {device} even at batch size 1; choose the CPU "
                         "or close what else uses the device")
