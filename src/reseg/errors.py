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


class CheckpointError(ResegError):
    """A model checkpoint or card that cannot be loaded (corrupt, wrong architecture keys, wrong class count)."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
