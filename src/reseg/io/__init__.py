"""Reading images, stacks, NIfTI volumes, DICOM series and Spectralis .vol files into a `Volume`, and writing
labels or images back atomically.

Readers keep the pixel type and the geometry (spacing in mm, the affine, 2-D vs 3-D on disk) so that labels
written later line up with the source in any viewer. NIfTI and DICOM volumes are turned into one orientation
(RAS+) for the models and turned back on writing. Every problem with an input file is an `InputError` naming
the file and what is wrong; writers never leave a half-written file behind.

The names below are loaded on first use (lazy attributes, as in scientific Python's SPEC 1): `Volume` and
`as_stack` cost nothing, while the readers pull in nibabel, tifffile and Pillow (a fifth of a second), and
pydicom and eyepy only when a DICOM or .vol file is read. A user interface that only handles volumes starts
without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "MODALITIES": "_volume",
    "Volume": "_volume",
    "as_stack": "_volume",
    "extension": "_common",
    "max_slice_pixels": "_common",
    "reading": "_common",
    "is_supported": "_read",
    "open_volume": "_lazy",
    "read_volume": "_read",
    "replace_atomically": "_atomic",
    "write_boundaries": "_boundaries",
    "write_image": "_write",
    "write_labels": "_write",
    "three_spacings": "_volume",
}

__all__ = [
    "MODALITIES",
    "Volume",
    "as_stack",
    "extension",
    "is_supported",
    "max_slice_pixels",
    "open_volume",
    "read_volume",
    "reading",
    "replace_atomically",
    "three_spacings",
    "write_boundaries",
    "write_image",
    "write_labels",
]

if TYPE_CHECKING:
    from reseg.io._atomic import replace_atomically
    from reseg.io._boundaries import write_boundaries
    from reseg.io._common import extension, max_slice_pixels, reading
    from reseg.io._lazy import open_volume
    from reseg.io._read import is_supported, read_volume
    from reseg.io._volume import MODALITIES, Volume, as_stack, three_spacings
    from reseg.io._write import write_image, write_labels


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'reseg.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"reseg.io.{_WHERE[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
