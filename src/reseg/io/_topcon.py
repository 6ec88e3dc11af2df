"""Topcon .fda / .fds files: a "FOCT" header and named chunks, parsed here from the layout the uocte project
documents (bitbucket.org/uocte/uocte/wiki/Topcon%20File%20Format), with the chunk fields oct-converter 0.7.0
names in its binary_structs/fda_binary.py.

oct-converter 0.7.0 cannot read these files under numpy 2 (it calls `numpy.fromstring` in binary mode, which
numpy 2 removed), and eyepy reads Topcon files only through oct-converter. The layout is small enough to read with
`struct` and numpy; JPEG 2000 B-scans and fundus images are decoded by Pillow.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reseg.errors import InputError
from reseg.io._common import reading
from reseg.io._volume import Volume, three_spacings

TOPCON_MAGIC = b"FOCT"  # the first bytes of every .fda / .fds file
_HEADER_BYTES = 15  # "FOCT", "FDA"/"FDS"/"FAA", two uint32 version numbers
_LATERALITY = {0: "OD", 1: "OS"}  # @CAPTURE_INFO(_02) first byte: 0 right eye, 1 left eye
# Image payloads that Pillow decodes (JPEG 2000 codestream and file, baseline JPEG); anything else is raw pixels.
_CODED = (b"\xff\x4f\xff\x51", b"\x00\x00\x00\x0cjP  ", b"\xff\xd8")
# @CONTOUR_INFO ids of the device's boundaries and the eyepy (Spectralis) names they match; ids not listed keep
# their own name. MULTILAYERS_n as oct-converter maps them; of RETINA_n only the innermost (ILM) and outermost (BM)
# are certain (the middle two lie between them in the real UK Biobank example, in an order the sources disagree on).
_LAYER_NAMES = {
    "MULTILAYERS_1": "ILM",
    "MULTILAYERS_2": "RNFL",  # RNFL/GCL: the outer edge of the nerve fibre layer, as Spectralis' RNFL line
    "MULTILAYERS_3": "GCL",
    "MULTILAYERS_4": "IPL",
    "MULTILAYERS_7": "BM",
    "MULTILAYERS_8": "INL",
    "MULTILAYERS_9": "ELM",
    "RETINA_1": "ILM",
    "RETINA_4": "BM",
}


@dataclass(frozen=True)
class _Chunks:
    """The file's bytes and where each named chunk's data lies (a name may occur several times)."""

    source: Path
    data: bytes
    where: dict[str, list[tuple[int, int]]]

    def first(self, *names: str) -> tuple[str, bytes] | None:
        for name in names:
            if name in self.where:
                start, size = self.where[name][0]
                return name, self.data[start : start + size]
        return None

    def all(self, name: str) -> list[bytes]:
        return [self.data[start : start + size] for start, size in self.where.get(name, [])]

    def unpack(self, name: str, layout: str, body: bytes, offset: int, what: str) -> tuple:
        """`struct.unpack_from` of a chunk's fields, or an InputError naming the chunk that ends before them."""
        self.require(name, body, offset + struct.calcsize(layout), what)
        return struct.unpack_from(layout, body, offset)

    def require(self, name: str, body: bytes, end: int, what: str) -> None:
        """An InputError naming the file and chunk unless the chunk's data reaches byte `end` (`what` lies there)."""
        if end > len(body):
            raise InputError(
                self.source, f"is damaged: chunk {name} is cut short ({what} needs {end} bytes, it holds {len(body)})"
            )


def read_topcon(source: Path) -> Volume:
    """Read a Topcon .fda or .fds file: B-scans as display grey levels, the spacing from its scan parameters,
    the laterality, the fundus image and the device's layer boundaries where the file holds them."""
    with reading(source, "a Topcon .fda/.fds file"):
        chunks = _chunks(source)
        kind = chunks.data[4:7].decode("latin-1").lower()
        bscans, raw_dtype = _bscans(source, chunks)
        metadata: dict = {
            "format": f"topcon-{'fds' if kind == 'fds' else 'fda'}",
            "dtype": raw_dtype,
            "axes": "ZYX",
            "scan_pattern": "unknown",  # the scan-mode codes are not documented
            "laterality": _laterality(chunks),
        }
        spacing, known = _spacing(chunks, bscans.shape)
        metadata["spacing_known"] = known
        boundaries, skipped = _boundaries(source, chunks, bscans.shape)
        if boundaries:
            metadata["boundaries"] = boundaries
        if skipped:
            metadata["boundaries_left_out"] = skipped
        fundus = _fundus(source, chunks)
        if fundus is not None:
            metadata["fundus"] = fundus
            metadata["fundus_rgb"] = fundus.ndim == 3
    return Volume(bscans, spacing, "OCT", source, None, 3, metadata)


def _chunks(source: Path) -> _Chunks:
    data = source.read_bytes()
    if data[:4] != TOPCON_MAGIC or len(data) < _HEADER_BYTES:
        raise InputError(source, f"is not a Topcon .fda/.fds file (it starts with {data[:7]!r}, not b'FOCTFDA')")
    where: dict[str, list[tuple[int, int]]] = {}
    position = _HEADER_BYTES
    while position < len(data) and data[position] != 0:  # a zero-length name ends the chunk list
        name_end = position + 1 + data[position]
        if name_end + 4 > len(data):
            raise InputError(source, f"is cut short inside a chunk header at byte {position}")
        name = data[position + 1 : name_end].decode("latin-1")
        (size,) = struct.unpack_from("<I", data, name_end)
        start = name_end + 4
        if not name.startswith("@") or start + size > len(data):
            raise InputError(
                source,
                f"is damaged or cut short: chunk {name!r} at byte {position} declares {size} bytes but "
                f"{len(data) - start} remain",
            )
        where.setdefault(name, []).append((start, size))
        position = start + size
    return _Chunks(source, data, where)


def _bscans(source: Path, chunks: _Chunks) -> tuple[np.ndarray, str]:
    """(Z, Y, X) uint8: JPEG 2000 B-scans (@IMG_JPEG, .fda) as stored, 16-bit ones (@IMG_SCAN_03 / @IMG_MOT_COMP_03,
    .fds) mapped to display grey levels."""
    found = chunks.first("@IMG_JPEG", "@IMG_SCAN_03", "@IMG_MOT_COMP_03")
    if found is None:
        raise InputError(
            source, f"holds no OCT B-scans (no @IMG_JPEG or @IMG_SCAN_03 chunk; it has {', '.join(chunks.where)})"
        )
    name, body = found
    if name == "@IMG_JPEG":
        _, _, _, width, height, count, _ = chunks.unpack(name, "<BIIIIII", body, 0, "its header")
        slices, offset = [], 25
        for index in range(count):
            (size,) = chunks.unpack(name, "<I", body, offset, f"the size of B-scan {index} of {count}")
            chunks.require(name, body, offset + 4 + size, f"B-scan {index} of {count}")
            image = _decode(source, body[offset + 4 : offset + 4 + size], f"B-scan {index}")
            if image.shape != (height, width):
                raise InputError(source, f"B-scan {index} decodes to {image.shape}, the header says {(height, width)}")
            slices.append(image)
            offset += 4 + size
        if not slices:
            raise InputError(source, "holds no B-scans (its @IMG_JPEG chunk lists none)")
        return np.stack(slices).astype(np.uint8), "uint8"
    _, width, height, bits, count, _, size = chunks.unpack(name, "<BIIIIBI", body, 0, "its header")
    if bits != 16 or size < width * height * count * 2 or len(body) < 22 + width * height * count * 2:
        raise InputError(source, f"{name} holds {size} bytes, not {count} x {height} x {width} 16-bit samples")
    if width * height * count == 0:
        raise InputError(source, f"holds no B-scans ({name} is {count} x {height} x {width})")
    raw = np.frombuffer(body, "<u2", width * height * count, 22).reshape(count, height, width)
    return _display_grey(raw), "uint16"


def _display_grey(raw: np.ndarray) -> np.ndarray:
    """16-bit samples to uint8, linear between the volume's 0.1 and 99.9 percentiles.

    The bundled OCT model is trained on 8-bit display-scaled B-scans; the file records no display window and
    Topcon's own mapping is not documented, so the volume's own range is used (a few hot pixels do not set it).
    """
    low, high = np.percentile(raw, (0.1, 99.9))
    scaled = (raw.astype(np.float64) - low) / max(high - low, 1.0)
    return np.rint(255.0 * np.clip(scaled, 0.0, 1.0)).astype(np.uint8)


def _decode(source: Path, payload: bytes, what: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(payload)) as image:
            return np.asarray(image)
    except OSError as exc:
        raise InputError(source, f"{what} cannot be decoded ({exc})") from exc


def _spacing(chunks: _Chunks, shape: tuple[int, ...]) -> tuple[tuple[float, float, float], tuple[bool, bool, bool]]:
    """(z, y, x) mm: scan height / B-scans (none for one B-scan), the axial pixel size, scan width / A-scans.

    @PARAM_SCAN_04 / _02 hold the scanned width and height on the fundus in mm and the axial pixel size in um;
    the divisions are oct-converter's."""
    found = chunks.first("@PARAM_SCAN_04", "@PARAM_SCAN_02")
    if found is None:
        return (1.0, 1.0, 1.0), (False, False, False)
    name, body = found
    width_mm, height_mm, axial_um = chunks.unpack(
        name, "<3d", body, 12 if name == "@PARAM_SCAN_04" else 21, "the scan size"
    )
    count, _, width = shape
    values = [height_mm / count if count > 1 else 0.0, axial_um / 1000.0, width_mm / width]
    known = tuple(bool(np.isfinite(v) and v > 0) for v in values)
    return three_spacings(v if ok else 1.0 for v, ok in zip(values, known, strict=True)), known  # type: ignore[return-value]


def _laterality(chunks: _Chunks) -> str:
    found = chunks.first("@CAPTURE_INFO_02", "@CAPTURE_INFO")
    return _LATERALITY.get(found[1][0], "") if found and found[1] else ""


def _boundaries(source: Path, chunks: _Chunks, shape: tuple[int, ...]) -> tuple[dict[str, np.ndarray], str]:
    """The device's boundaries as (Z, W) rows from the top, NaN where absent, and why any were left out.

    Each @CONTOUR_INFO holds one boundary for the whole scan: an id, a (B-scans, A-scans) grid of heights
    counted from the B-scan's bottom (uint16, or float64 where the size says 8 bytes a value), its B-scans in
    reverse order (as oct-converter and OCT-tools read them)."""
    count, height, width = shape
    boundaries: dict[str, np.ndarray] = {}
    skipped = []
    for body in chunks.all("@CONTOUR_INFO"):
        if len(body) < 34:
            raise InputError(source, f"a @CONTOUR_INFO chunk is {len(body)} bytes, shorter than its 34-byte header")
        layer_id = body[:20].split(b"\x00")[0].decode("latin-1")
        grid_width, grid_height, size = struct.unpack_from("<III", body, 22)
        values = grid_width * grid_height
        dtype = "<f8" if values and size == values * 8 else "<u2"
        if len(body) < 34 + values * np.dtype(dtype).itemsize:
            raise InputError(source, f"@CONTOUR_INFO {layer_id} is cut short")
        if (grid_height, grid_width) != (count, width):
            skipped.append(f"{layer_id} covers {grid_height} x {grid_width} A-scans, the B-scans {count} x {width}")
            continue
        grid = np.frombuffer(body, dtype, values, 34).reshape(count, width)[::-1].astype(np.float64)
        rows = np.where((grid > 0) & (grid <= height), height - grid, np.nan)
        boundaries[_LAYER_NAMES.get(layer_id, layer_id)] = rows
    return boundaries, "; ".join(skipped)


def _fundus(source: Path, chunks: _Chunks) -> np.ndarray | None:
    """The colour fundus photograph (@IMG_FUNDUS coded, @IMG_OBS raw) as RGB, else the grey one (@IMG_TRC_02).

    Colour pixels are stored blue-green-red (as oct-converter and OCT-tools read them) and are turned to RGB;
    the grey image, stored as three equal channels in some files, becomes one channel."""
    found = chunks.first("@IMG_FUNDUS", "@IMG_OBS", "@IMG_TRC_02")
    if found is None:
        return None
    name, body = found
    offset = 24 if name == "@IMG_FUNDUS" else 21
    width, height, bits = chunks.unpack(name, "<III", body, 0, "the fundus image's size")
    (size,) = chunks.unpack(name, "<I", body, offset - 4, "the fundus image's byte count")
    chunks.require(name, body, offset + size, "the fundus image")
    payload = body[offset : offset + size]
    if payload.startswith(_CODED):
        image = _decode(source, payload, f"the fundus image ({name})")
    else:
        channels = max(bits // 8, 1)
        if len(payload) < width * height * channels:
            raise InputError(source, f"the fundus image ({name}) is cut short")
        image = np.frombuffer(payload, np.uint8, width * height * channels).reshape(height, width, channels)
    if image.ndim == 3 and image.shape[2] >= 3:
        image = image[..., 2::-1]
        if name == "@IMG_TRC_02" or (image == image[..., :1]).all():
            image = image[..., 0]
    return np.ascontiguousarray(image.squeeze())
