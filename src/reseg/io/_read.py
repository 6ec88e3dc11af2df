"""`read_volume` and `is_supported`: which reader a file or folder goes to."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from reseg.errors import InputError
from reseg.io._cirrus import is_cirrus_img, read_cirrus_img
from reseg.io._common import extension, natural_key, to_volume
from reseg.io._dicom import is_dicom_file, read_dicom
from reseg.io._e2e import E2E_MAGIC, read_heyex_e2e
from reseg.io._formats import NIFTI_EXTENSIONS, PIL_EXTENSIONS, TIFF_EXTENSIONS, read_nifti, read_pil, read_tiff
from reseg.io._heyex import read_heyex_vol
from reseg.io._heyex_xml import read_heyex_xml, starts_as_heyex_xml
from reseg.io._topcon import TOPCON_MAGIC, read_topcon
from reseg.io._volume import Volume, normalize_modality

_SLICE_EXTENSIONS = PIL_EXTENSIONS | TIFF_EXTENSIONS
_READERS: dict[str, Callable[[Path], Volume]] = {
    **dict.fromkeys(PIL_EXTENSIONS, read_pil),
    **dict.fromkeys(TIFF_EXTENSIONS, read_tiff),
    **dict.fromkeys(NIFTI_EXTENSIONS, read_nifti),
    ".vol": read_heyex_vol,
    ".e2e": read_heyex_e2e,
    ".xml": read_heyex_xml,
    ".fda": read_topcon,
    ".fds": read_topcon,
    ".img": read_cirrus_img,
    ".dcm": read_dicom,
}


_HEAD_BYTES = 4096  # the most a content check reads of a file


def _head(path: Path, size: int = _HEAD_BYTES) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(size)
    except OSError:
        return b""


# Extensions that other tools use too (.xml, .img) or whose files have their own magic: the file's content says.
_CONTENT_CHECKS: dict[str, Callable[[Path], bool]] = {
    ".xml": lambda path: starts_as_heyex_xml(_head(path)),
    ".img": is_cirrus_img,
    ".e2e": lambda path: _head(path, len(E2E_MAGIC)) == E2E_MAGIC,
    ".fda": lambda path: _head(path, len(TOPCON_MAGIC)) == TOPCON_MAGIC,
    ".fds": lambda path: _head(path, len(TOPCON_MAGIC)) == TOPCON_MAGIC,
}


def is_supported(path: str | Path) -> bool:
    """Cheap check, without reading pixels, so a reader hook can decline files it cannot open.

    Extension-less files and folders are looked at for the DICOM marker (132 bytes a file). Vendor files are
    looked at too (at most 4 KB): a Heyex .xml export's root element, the .e2e / .fda / .fds magic bytes, a
    Cirrus .img's name and size; other tools' .xml and .img files are declined for other readers.
    """
    path = Path(path)
    if path.is_dir():
        try:
            return any(_is_slice_file(f) or is_dicom_file(f) for f in path.iterdir())
        except OSError:
            return False
    suffix = extension(path)
    if suffix in _CONTENT_CHECKS:
        return _CONTENT_CHECKS[suffix](path)
    return suffix in _READERS or is_dicom_file(path)


def read_volume(path: str | Path, modality: str | None = None) -> Volume:
    """Read an image, a TIFF stack, a NIfTI volume, a DICOM series, a vendor OCT file (Spectralis .vol,
    Heidelberg .e2e, a Heyex XML export's .xml, Topcon .fda / .fds, Zeiss Cirrus .img) or a folder of slices.

    Keeps dtype and geometry; NIfTI and DICOM volumes come in nibabel's closest canonical (RAS+) orientation.
    A folder holding DICOM files is read as one DICOM series, otherwise as PNG/TIFF slices in natural name order.
    `modality` overrides the file's (DICOM Modality tag; vendor OCT files are OCT) or the guess (CT when
    intensities look like Hounsfield units, otherwise "unknown"). Raises InputError naming the file for anything
    that cannot be segmented as it is.
    """
    chosen = normalize_modality(modality) if modality is not None else None
    source = Path(path)
    if not source.exists():
        raise InputError(source, "no such file or folder")
    volume = _read_folder(source) if source.is_dir() else _read_file(source)
    volume.modality = chosen or volume.modality
    return volume


def _read_file(source: Path) -> Volume:
    if source.stat().st_size == 0:
        raise InputError(source, "file is empty (0 bytes)")
    reader = _READERS.get(extension(source)) or (read_dicom if is_dicom_file(source) else None)
    if reader is None:
        supported = ", ".join(sorted(_READERS))
        raise InputError(
            source,
            f"unsupported file type '{source.suffix or source.name}'; supported: {supported} "
            "and DICOM files without extension",
        )
    return reader(source)


def _read_folder(folder: Path) -> Volume:
    try:
        entries = sorted(folder.iterdir(), key=lambda f: natural_key(f.name))
    except OSError as exc:
        raise InputError(folder, f"cannot list the folder ({exc.strerror})") from exc
    if any(is_dicom_file(f) for f in entries):
        return read_dicom(folder)
    files = [f for f in entries if _is_slice_file(f)]
    if not files:
        raise InputError(folder, "folder holds no PNG or TIFF slices and no DICOM files")
    first = _read_slice(files[0])
    data = np.empty((len(files), *first.data.shape[1:]), dtype=first.data.dtype)
    for index, file in enumerate(files):
        piece = first if index == 0 else _read_slice(file)
        if piece.data.shape != first.data.shape or piece.data.dtype != first.data.dtype:
            raise InputError(
                file,
                f"slice is {piece.data.shape[1:]} {piece.data.dtype} but {files[0].name} is "
                f"{first.data.shape[1:]} {first.data.dtype}; all slices in a folder must match",
            )
        data[index] = piece.data[0]
    known = (False, *first.metadata["spacing_known"][1:])
    metadata = {
        **first.metadata,
        "format": "folder",
        "axes": "ZYX",
        "spacing_known": known,
        "slice_files": [f.name for f in files],
    }
    return to_volume(folder, data, (1.0, *first.spacing[1:]), None, metadata)


def _read_slice(file: Path) -> Volume:
    piece = _read_file(file)
    if piece.ndim_on_disk != 2:
        raise InputError(file, f"is a stack of {piece.data.shape[0]} slices; a folder must hold one 2-D image per file")
    return piece


def _is_slice_file(path: Path) -> bool:
    return not path.name.startswith(".") and extension(path) in _SLICE_EXTENSIONS and path.is_file()
