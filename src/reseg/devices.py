"""Which compute device runs a model: CUDA > MPS > CPU unless the user names one.

torch is imported inside the functions that need it: a command-line parser or a user interface that only
lists the choices must not pay torch's start-up (about two CPU-seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reseg.errors import ResegError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
# What runs the network (`reseg.inference.backends`): here, so that parsers list them without importing torch.
BACKEND_CHOICES = ("auto", "torch", "onnx")


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (always ends with "cpu")."""
    import torch

    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn "auto" into the best available device; refuse a named device this machine lacks."""
    import torch

    if isinstance(name, torch.device):
        return name
    requested = name.lower()
    available = available_devices()
    if requested == "auto":
        return torch.device(available[0])
    kind = requested.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ResegError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if kind not in available:
        raise ResegError(f"device {name!r} is not available here (available: {', '.join(available)})")
    return torch.device(requested)
