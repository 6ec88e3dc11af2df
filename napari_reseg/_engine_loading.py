"""Bring the deep-learning half of the engine (torch, the models) into the process from a worker thread,
without freezing napari's interface meanwhile.

Importing torch takes seconds; done on a worker thread it still freezes the event loop for about 0.3-0.4 s in
one piece, because the dynamic loader maps and initialises torch's core library (`libtorch_cpu`, hundreds of MB)
inside `import torch._C` while holding Python's GIL. Loading that library first through ctypes does the same
work with the GIL released (ctypes lets go of it around `dlopen`), after which `import torch` finds it mapped
and the rest of the import interleaves with the event loop. Measured on 2 CPU cores: longest event-loop gap
during the import 0.29 s without the preload, 0.05 s with it (`benchmarks/bench_ui_stall.py`).
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
from pathlib import Path

# torch's own libraries in load order (dependencies first); a name that a platform lacks is skipped.
_CORE_LIBRARIES = ("c10", "torch_cpu")
_SUFFIX = {"darwin": ".dylib", "win32": ".dll"}.get(sys.platform, ".so")


def _preload_torch_libraries() -> None:
    if "torch" in sys.modules:
        return
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return  # no torch: the import below raises the error the user should see
    folder = Path(spec.origin).parent / "lib"
    prefix = "" if sys.platform == "win32" else "lib"
    for name in _CORE_LIBRARIES:
        library = folder / f"{prefix}{name}{_SUFFIX}"
        if not library.exists():
            return
        try:
            ctypes.CDLL(str(library), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        except OSError:
            return  # torch's own import will load it (and report any real problem)


def load_engine() -> list[str]:
    """Import the engine's inference and model code (call from a worker thread); returns the usable devices."""
    _preload_torch_libraries()
    importlib.import_module("reseg.inference")
    from reseg.devices import available_devices

    return available_devices()
