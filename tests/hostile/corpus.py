"""A corpus of broken, hostile and unusual inputs, built from the real files in ../shared/data (where present)
and from synthetic ones, each with what a correct tool does with it.

Every case is a `reseg` command line over files in its own folder: `<case>/in/` holds the inputs and
`<case>/a/b/c/out/` is the only place the command may write (three levels deep, so that a name such as
`../../../x` in a hostile manifest would land inside the case folder, where the test finds it). Cases whose
input is a scan are also opened with the napari reader.

`test_corpus.py` runs them and classifies each outcome; this module only builds files and says what is right.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ERROR, SUCCESS, EITHER = "error", "success", "either"
OUT = "a/b/c/out"  # relative to the case folder


@dataclass
class Case:
    """One input and what must come of it. `argv` holds `{in}` and `{out}` for the case's two folders."""

    name: str
    argv: list[str]
    expect: str  # ERROR: refused with one line naming the input; SUCCESS: done, and `check` finds nothing wrong
    reader_input: str | None = None  # relative to in/: also opened with the napari reader
    check: Callable[[Path, Path], str | None] | None = None  # (in, out) -> what is wrong with a success
    reader_shape: tuple[int, ...] | None = None  # the layer's shape when the reader must open it
    note: str = ""
    folder: Path = field(default=Path())

    @property
    def inputs(self) -> Path:
        return self.folder / "in"

    @property
    def output(self) -> Path:
        return self.folder / OUT

    def command(self) -> list[str]:
        return [part.replace("{in}", str(self.inputs)).replace("{out}", str(self.output)) for part in self.argv]


class CorpusBuilder:
    """Collects cases under `root`; each `add_*` writes the case's files and registers what is expected."""

    def __init__(self, root: Path, shared: Path | None) -> None:
        self.root = root
        self.shared = shared if shared is not None and shared.is_dir() else None
        self.cases: list[Case] = []
        self.rng = np.random.default_rng(20261201)

    def case(self, name: str, argv: list[str], expect: str, **options) -> Case:
        case = Case(name, argv, expect, folder=self.root / name, **options)
        assert all(c.name != name for c in self.cases), name
        case.inputs.mkdir(parents=True)
        case.output.mkdir(parents=True)
        self.cases.append(case)
        return case

    def scan(
        self,
        name: str,
        file_name: str,
        content: bytes | Callable[[Path], None],
        expect: str,
        check: Callable[[Path, Path], str | None] | None = None,
        reader: bool = True,
        reader_shape: tuple[int, ...] | None = None,
        extra: list[str] = (),
        note: str = "",
    ) -> Case:
        """A `reseg segment` case over one input file (bytes, or a function that writes it)."""
        output = "labels.nii.gz" if file_name.lower().endswith((".nii", ".nii.gz", ".dcm")) else "labels.tif"
        case = self.case(
            name,
            ["segment", f"{{in}}/{file_name}", "-o", f"{{out}}/{output}", *extra],
            expect,
            reader_input=file_name if reader else None,
            check=check,
            reader_shape=reader_shape,
            note=note,
        )
        target = case.inputs / file_name
        if callable(content):
            content(target)
        else:
            target.write_bytes(content)
        return case

    def real(self, *parts: str) -> Path | None:
        if self.shared is None:
            return None
        path = self.shared.joinpath(*parts)
        return path if path.exists() else None


# --- checks of a success -----------------------------------------------------------------------------------


def labels_of_shape(shape: tuple[int, ...], classes: int = 10) -> Callable[[Path, Path], str | None]:
    """The output label map has `shape` (Z, Y, X as reseg reads it) and only class values."""

    def check(_inputs: Path, out: Path) -> str | None:
        from reseg.io import read_volume

        files = [f for f in out.iterdir() if not f.name.startswith(".")]
        if len(files) != 1:
            return f"expected one output file, found {[f.name for f in files]}"
        labels = read_volume(files[0]).data
        if labels.shape != shape:
            return f"labels of shape {labels.shape}, expected {shape}"
        if labels.max() >= classes:
            return f"label value {labels.max()} beyond the {classes} classes"
        return None

    return check


def exported(count: int) -> Callable[[Path, Path], str | None]:
    """The export folder `out/dataset` lists `count` items and holds exactly their files (images, labels and,
    for OCT, boundaries) and dataset.json."""

    def check(_inputs: Path, out: Path) -> str | None:
        manifest = json.loads((out / "dataset" / "dataset.json").read_text())
        listed = {item[key] for item in manifest["items"] for key in ("image", "label", "boundaries") if key in item}
        on_disk = {str(f.relative_to(out / "dataset")) for f in (out / "dataset").rglob("*") if f.is_file()}
        if len(manifest["items"]) != count or on_disk != listed | {"dataset.json"}:
            return f"dataset lists {sorted(listed)} but holds {sorted(on_disk)}"
        return None

    return check


def read_mean_near(file_name: str, mean: float, shape: tuple[int, ...]) -> Callable[[Path, Path], str | None]:
    """The input reads with this shape and mean intensity (e.g. an inverted MONOCHROME1 comes out upright)."""
    labels = labels_of_shape(shape)

    def check(inputs: Path, out: Path) -> str | None:
        from reseg.io import read_volume

        data = read_volume(inputs / file_name).data
        if abs(float(data.mean()) - mean) > 1.0:
            return f"{file_name} reads with mean {data.mean():.1f}, expected {mean:.1f}"
        return labels(inputs, out)

    return check


# --- file makers ---------------------------------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    """PNG bytes of a grey (Y, X), grey+alpha (Y, X, 2), RGB (Y, X, 3) or 16-bit (uint16) array."""
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff(array: np.ndarray, **options) -> Callable[[Path], None]:
    return lambda path: tifffile.imwrite(path, array, **options)


def _nifti(
    array: np.ndarray,
    affine: np.ndarray | None = None,
    compressed: bool = True,
    header_edit: Callable[[nib.Nifti1Header], None] | None = None,
) -> Callable[[Path], None]:
    """A NIfTI file; `header_edit` changes the header bytes after nibabel wrote a valid one (nibabel itself
    refuses to write e.g. a NaN affine)."""

    def write(path: Path) -> None:
        plain = path.with_name(path.name.removesuffix(".gz") + ".plain.nii")
        nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 3.0, 1.0]) if affine is None else affine), plain)
        raw = bytearray(plain.read_bytes())
        plain.unlink()
        if header_edit is not None:
            header = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(bytes(raw[:348])), check=False)
            header_edit(header)
            raw[:348] = header.binaryblock
        path.write_bytes(gzip.compress(bytes(raw)) if compressed else bytes(raw))

    return write


def _dicom(
    array: np.ndarray,
    modality: str = "OPT",
    photometric: str = "MONOCHROME2",
    edit: Callable[[Dataset], None] | None = None,
) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.5.4"  # Ophthalmic Tomography
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, generate_uid(), generate_uid()
        ds.Rows, ds.Columns = array.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated = ds.BitsStored = 8 * array.dtype.itemsize
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = int(array.dtype.kind == "i")
        if array.ndim == 3:
            ds.NumberOfFrames = array.shape[0]
        ds.PixelData = array.tobytes()
        if edit is not None:
            edit(ds)
        ds.save_as(path, enforce_file_format=True)

    return write


def _truncated(data: bytes, fraction: float) -> bytes:
    return data[: max(1, int(len(data) * fraction))]


def _flipped(data: bytes, rng: np.random.Generator, count: int, start: int = 0) -> bytes:
    damaged = bytearray(data)
    for position in rng.integers(start, len(data), count):
        damaged[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(damaged)


def _png_bomb(height: int, width: int) -> bytes:
    """A small PNG that decodes to a huge image (zeros deflate ~1000:1)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# --- the corpus ----------------------------------------------------------------------------------------------


def build_corpus(root: Path, shared: Path | None) -> list[Case]:
    """Write every case under `root` and return them."""
    builder = CorpusBuilder(root, shared)
    _synthetic_images(builder)
    _tiffs(builder)
    _niftis(builder)
    _dicoms(builder)
    _folders(builder)
    _real_files(builder)
    _model_cards(builder)
    _sessions(builder)
    _export_folders(builder)
    return builder.cases


def _synthetic_images(b: CorpusBuilder) -> None:
    grey = (b.rng.random((96, 128)) * 200).astype(np.uint8)
    for suffix in (".png", ".tif", ".nii", ".nii.gz", ".vol", ".dcm", ".jpg", ".bmp"):
        tag = suffix.strip(".").replace(".", "_")
        b.scan(f"empty_{tag}", f"scan{suffix}", b"", ERROR)
        b.scan(f"random_bytes_{tag}", f"scan{suffix}", b.rng.bytes(4096), ERROR)
        b.scan(f"text_as_{tag}", f"scan{suffix}", b"this is not an image\n" * 20, ERROR)
    png = _png(grey)
    b.scan("png_grey", "scan.png", png, SUCCESS, labels_of_shape((1, 96, 128)), reader_shape=(96, 128))
    for fraction in (0.1, 0.5, 0.9):
        b.scan(f"png_truncated_{int(fraction * 100)}", "scan.png", _truncated(png, fraction), ERROR)
    b.scan("png_bit_flips", "scan.png", _flipped(png, b.rng, 8, start=40), ERROR, note="PNG chunk CRCs")
    b.scan("png_named_tif", "scan.tif", png, ERROR)
    b.scan("png_named_nii", "scan.nii", png, ERROR)
    b.scan("png_named_dcm", "scan.dcm", png, ERROR)
    b.scan("png_named_vol", "scan.vol", png, ERROR)
    b.scan("png_bomb_12000", "scan.png", _png_bomb(12000, 12000), ERROR, note="140 kB that decodes to 144 MP")
    b.scan("png_rgb_colour", "scan.png", _png((b.rng.random((64, 64, 3)) * 255).astype(np.uint8)), ERROR)
    b.scan(
        "png_rgb_grey",
        "scan.png",
        _png(np.repeat(grey[..., None], 3, axis=2)),
        SUCCESS,
        labels_of_shape((1, 96, 128)),
        reader_shape=(96, 128),
    )
    b.scan(
        "png_grey_alpha",
        "scan.png",
        _png(np.stack([grey, np.full_like(grey, 255)], axis=2)),
        SUCCESS,
        labels_of_shape((1, 96, 128)),
        reader_shape=(96, 128),
    )
    b.scan(
        "png_16bit",
        "scan.png",
        _png(grey.astype(np.uint16) * 250),
        SUCCESS,
        labels_of_shape((1, 96, 128)),
        reader_shape=(96, 128),
    )
    b.scan("png_1x1", "scan.png", _png(np.zeros((1, 1), np.uint8)), EITHER)
    b.scan("png_tiny_3x5", "scan.png", _png(grey[:3, :5]), EITHER)
    b.scan("png_one_row", "scan.png", _png(grey[:1]), EITHER)
    b.scan(
        "jpeg_grey",
        "scan.jpg",
        lambda p: Image.fromarray(grey).save(p, quality=90),
        SUCCESS,
        labels_of_shape((1, 96, 128)),
        reader_shape=(96, 128),
    )
    b.scan("unknown_extension", "scan.xyz", png, ERROR, reader=False)
    b.scan("no_such_file", "missing.png", lambda p: None, ERROR, reader=False)
    b.scan("symlink_to_dev_zero", "scan.nii", lambda p: p.symlink_to("/dev/zero"), ERROR)
    b.scan("symlink_loop", "scan.png", lambda p: p.symlink_to(p), ERROR, reader=False)
    b.scan("a_folder_named_png", "scan.png", lambda p: p.mkdir(), ERROR, reader=False)
    b.scan("batch_size_zero", "scan.png", png, ERROR, reader=False, extra=["--batch-size", "0"])
    b.scan("output_folder_missing", "scan.png", png, ERROR, reader=False, extra=["-o", "{out}/no/such/labels.tif"])
    b.scan("output_unsupported_suffix", "scan.png", png, ERROR, reader=False, extra=["-o", "{out}/labels.png"])


def _tiffs(b: CorpusBuilder) -> None:
    stack = (b.rng.random((5, 64, 80)) * 250).astype(np.uint8)
    shape = (5, 64, 80)
    for compression in ("lzw", "jpeg", "zlib", "zstd", "packbits", "lzma"):
        b.scan(
            f"tiff_{compression}",
            "scan.tif",
            _tiff(stack, compression=compression, photometric="minisblack"),
            SUCCESS,
            labels_of_shape(shape),
            reader_shape=shape,
        )
    for count in (3, 4):
        b.scan(
            f"tiff_{count}_slices_tifffile_defaults",
            "scan.tif",
            _tiff(stack[:count]),
            SUCCESS,
            labels_of_shape((count, 64, 80)),
            reader_shape=(count, 64, 80),
            note="tifffile stores (3|4, Y, X) as planar RGB(A)",
        )
    b.scan("tiff_3x3x3_minisblack", "scan.tif", _tiff(stack[:3, :3, :3], photometric="minisblack"), EITHER)
    b.scan("tiff_rgb_colour", "scan.tif", _tiff((b.rng.random((32, 40, 3)) * 255).astype(np.uint8)), ERROR)
    b.scan(
        "tiff_miniswhite",
        "scan.tif",
        _tiff(255 - stack[0], photometric="miniswhite"),
        SUCCESS,
        read_mean_near("scan.tif", float(stack[0].mean()), (1, 64, 80)),
        reader_shape=(64, 80),
    )
    b.scan("tiff_float_nan", "scan.tif", _tiff(np.where(stack > 200, np.nan, stack).astype(np.float32)), ERROR)
    b.scan(
        "tiff_float32",
        "scan.tif",
        _tiff(stack.astype(np.float32) / 255),
        SUCCESS,
        labels_of_shape(shape),
        reader_shape=shape,
    )
    b.scan(
        "tiff_uint16_tiled",
        "scan.tif",
        _tiff(stack.astype(np.uint16) * 200, tile=(32, 32)),
        SUCCESS,
        labels_of_shape(shape),
        reader_shape=shape,
    )
    b.scan("tiff_bigtiff", "scan.tif", _tiff(stack, bigtiff=True), SUCCESS, labels_of_shape(shape), reader_shape=shape)
    b.scan(
        "tiff_5d_hyperstack",
        "scan.tif",
        _tiff(np.zeros((2, 3, 2, 16, 16), np.uint8), imagej=True, metadata={"axes": "TZCYX"}),
        ERROR,
    )
    b.scan("tiff_complex", "scan.tif", _tiff(np.zeros((8, 8), np.complex64)), ERROR)
    b.scan("tiff_zero_height", "scan.tif", _tiff(np.zeros((0, 8), np.uint8)), ERROR)
    plain = Path(b.root / "_stack.tif")
    tifffile.imwrite(plain, stack, compression="zlib", photometric="minisblack")
    packed = plain.read_bytes()
    plain.unlink()
    for fraction in (0.2, 0.6, 0.95):
        b.scan(f"tiff_truncated_{int(fraction * 100)}", "scan.tif", _truncated(packed, fraction), ERROR)
    b.scan(
        "tiff_deflate_bit_flips",
        "scan.tif",
        _flipped(packed, b.rng, 6, start=16),
        EITHER,
        note="zlib streams in TIFF carry no checksum tifffile verifies; a flip may go unnoticed",
    )
    b.scan("tiff_header_claims_huge", "scan.tif", _tiff_claiming(60000, 60000), ERROR)


def _tiff_claiming(height: int, width: int) -> bytes:
    """A 200-byte TIFF whose tags claim an enormous uncompressed image."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, height * width),
    ]
    ifd = (
        struct.pack("<H", len(entries))
        + b"".join(
            struct.pack("<HHI", tag, kind, count)
            + (struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0))
            for tag, kind, count, value in entries
        )
        + struct.pack("<I", 0)
    )
    return b"II*\0" + struct.pack("<I", 8 + 16) + b"\0" * 16 + ifd


def _niftis(b: CorpusBuilder) -> None:
    volume = (b.rng.random((40, 48, 6)) * 300 - 1000).astype(np.int16)  # (X, Y, Z), air-like HU
    shape = (6, 48, 40)
    for compressed in (True, False):
        suffix = ".nii.gz" if compressed else ".nii"
        tag = "gz" if compressed else "plain"
        b.scan(
            f"nifti_{tag}",
            f"scan{suffix}",
            _nifti(volume, compressed=compressed),
            SUCCESS,
            labels_of_shape(shape, classes=9),
            reader_shape=shape,
        )

        def nan_affine(header: nib.Nifti1Header) -> None:
            header["srow_x"] = header["srow_y"] = header["srow_z"] = [np.nan] * 4
            header["sform_code"], header["qform_code"] = 1, 0

        b.scan(
            f"nifti_{tag}_nan_affine",
            f"scan{suffix}",
            _nifti(volume, compressed=compressed, header_edit=nan_affine),
            ERROR,
        )

        def zero_pixdim(header: nib.Nifti1Header) -> None:
            header["pixdim"][1:4] = 0
            header["sform_code"], header["qform_code"] = 0, 0

        b.scan(
            f"nifti_{tag}_zero_pixdim",
            f"scan{suffix}",
            _nifti(volume, compressed=compressed, header_edit=zero_pixdim),
            SUCCESS,
            labels_of_shape(shape, classes=9),
            reader_shape=shape,
        )

        def huge_dims(header: nib.Nifti1Header) -> None:
            header["dim"][1:4] = [30000, 30000, 30000]

        b.scan(
            f"nifti_{tag}_header_claims_huge",
            f"scan{suffix}",
            _nifti(volume, compressed=compressed, header_edit=huge_dims),
            ERROR,
        )
    raw = Path(b.root / "_v.nii.gz")
    _nifti(volume)(raw)
    packed = raw.read_bytes()
    raw.unlink()
    for index in range(3):
        b.scan(
            f"nifti_gz_bit_flips_{index}",
            "scan.nii.gz",
            _flipped(packed, b.rng, 1 + index, start=len(packed) // 3),
            ERROR,
            note="gzip CRC",
        )
    for fraction in (0.05, 0.5, 0.99):
        b.scan(f"nifti_gz_truncated_{int(fraction * 100)}", "scan.nii.gz", _truncated(packed, fraction), ERROR)
    b.scan("nifti_nan_voxels", "scan.nii.gz", _nifti(np.where(volume > -800, np.nan, volume).astype(np.float32)), ERROR)
    b.scan("nifti_4d_time", "scan.nii.gz", _nifti(np.zeros((8, 8, 4, 3), np.int16)), ERROR)
    b.scan("nifti_complex", "scan.nii.gz", _nifti(np.zeros((8, 8, 4), np.complex64)), ERROR)
    b.scan(
        "nifti_2d",
        "scan.nii.gz",
        _nifti(volume[:, :, 0]),
        SUCCESS,
        labels_of_shape((1, 48, 40), classes=9),
        reader_shape=(48, 40),
    )


def _dicoms(b: CorpusBuilder) -> None:
    bscan = (b.rng.random((64, 96)) * 120 + 20).astype(np.uint8)
    b.scan(
        "dicom_oct_monochrome2",
        "scan.dcm",
        _dicom(bscan),
        SUCCESS,
        read_mean_near("scan.dcm", float(bscan.mean()), (1, 64, 96)),
        reader_shape=(64, 96),
    )
    b.scan(
        "dicom_oct_monochrome1",
        "scan.dcm",
        _dicom(255 - bscan, photometric="MONOCHROME1"),
        SUCCESS,
        read_mean_near("scan.dcm", float(bscan.mean()), (1, 64, 96)),
        reader_shape=(64, 96),
        note="stored white-lowest: must read as MONOCHROME2 would",
    )
    b.scan("dicom_no_pixels", "scan.dcm", _dicom(bscan, edit=lambda ds: delattr(ds, "PixelData")), ERROR)
    b.scan(
        "dicom_pixels_short", "scan.dcm", _dicom(bscan, edit=lambda ds: setattr(ds, "PixelData", b"\0" * 100)), ERROR
    )
    b.scan("dicom_zero_rows", "scan.dcm", _dicom(bscan, edit=lambda ds: setattr(ds, "Rows", 0)), ERROR)
    full = Path(b.root / "_b.dcm")
    _dicom(bscan)(full)
    data = full.read_bytes()
    full.unlink()
    for fraction in (0.1, 0.5):
        b.scan(f"dicom_truncated_{int(fraction * 100)}", "scan.dcm", _truncated(data, fraction), ERROR)


def _folders(b: CorpusBuilder) -> None:
    slices = (b.rng.random((3, 40, 50)) * 200).astype(np.uint8)

    def folder_of(images: list[np.ndarray], names: list[str] | None = None) -> Callable[[Path], None]:
        def write(path: Path) -> None:
            path.mkdir()
            for index, image in enumerate(images):
                (path / (names[index] if names else f"slice{index:02d}.png")).write_bytes(_png(image))

        return write

    b.scan(
        "folder_of_slices",
        "slices",
        folder_of(list(slices)),
        SUCCESS,
        labels_of_shape((3, 40, 50)),
        reader_shape=(3, 40, 50),
    )
    b.scan("folder_mixed_sizes", "slices", folder_of([slices[0], slices[1][:30]]), ERROR)
    b.scan("folder_empty", "slices", lambda p: p.mkdir(), ERROR, reader=False)
    b.scan("folder_only_text", "slices", lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), ERROR, reader=False)
    b.scan(
        "folder_with_broken_slice",
        "slices",
        lambda p: (folder_of(list(slices))(p), (p / "slice01.png").write_bytes(b"broken")),
        ERROR,
    )


def _real_files(b: CorpusBuilder) -> None:
    duke = b.real("duke_dme", "images", "subject01_bscan00.png")
    if duke is not None:
        data = duke.read_bytes()
        b.scan("real_duke_png", "scan.png", data, SUCCESS, labels_of_shape((1, 496, 768)), reader_shape=(496, 768))
        b.scan("real_duke_png_truncated", "scan.png", _truncated(data, 0.7), ERROR)
        b.scan("real_duke_png_flipped", "scan.png", _flipped(data, b.rng, 4, start=100), ERROR)
        grey = np.asarray(Image.open(duke))
        b.scan(
            "real_duke_as_monochrome1_dicom",
            "scan.dcm",
            _dicom(255 - grey, photometric="MONOCHROME1"),
            SUCCESS,
            read_mean_near("scan.dcm", float(grey.mean()), (1, 496, 768)),
            reader_shape=(496, 768),
        )
    vol = b.real("spectralis_vol", "Willis_B_716_0.vol")
    if vol is not None:
        data = vol.read_bytes()
        b.scan("real_vol", "scan.vol", data, SUCCESS, labels_of_shape((1, 496, 768)), reader_shape=(1, 496, 768))
        for fraction in (0.001, 0.3, 0.8):
            b.scan(f"real_vol_truncated_{int(fraction * 1000)}", "scan.vol", _truncated(data, fraction), ERROR)
        b.scan("real_vol_wrong_magic", "scan.vol", b"HSF-XYZ-" + data[8:], ERROR)
        b.scan(
            "real_vol_header_flips",
            "scan.vol",
            _flipped(data[:2048], b.rng, 12, start=8) + data[2048:],
            EITHER,
            note="an uncompressed header: a flip may change only metadata",
        )
    ct = b.real("ct_totalseg", "example_ct_sm.nii.gz")
    if ct is not None:
        data = ct.read_bytes()
        b.scan(
            "real_ct_nifti",
            "ct.nii.gz",
            data,
            SUCCESS,
            labels_of_shape((30, 101, 122), classes=9),
            reader_shape=(30, 101, 122),
        )
        b.scan("real_ct_flipped", "ct.nii.gz", _flipped(data, b.rng, 2, start=len(data) // 2), ERROR)
        b.scan("real_ct_truncated", "ct.nii.gz", _truncated(data, 0.6), ERROR)
    series = b.real("ct_totalseg", "example_ct_dicom")
    if series is not None:
        files = sorted(f for f in series.iterdir() if f.is_file())
        b.scan(
            "real_dicom_series_missing_pixels",
            "series",
            lambda p: (p.mkdir(), [shutil.copy(f, p / f.name) for f in files[:3]], _strip_pixels(p / files[1].name)),
            ERROR,
        )
        b.scan(
            "real_dicom_truncated_slice",
            "series",
            lambda p: (
                p.mkdir(),
                [shutil.copy(f, p / f.name) for f in files[:3]],
                (p / files[2].name).write_bytes(_truncated(files[2].read_bytes(), 0.5)),
            ),
            ERROR,
        )
    vendor_shapes = {
        "e2e_minimized.E2E": (1, 496, 512),
        "fda_minimized.fda": (1, 650, 512),
        "fds_minimized.fds": (4, 3, 2),
    }
    for name, shape in vendor_shapes.items():
        vendor = b.real("vendor_oct", name)
        if vendor is not None:
            b.scan(
                f"vendor_{name.split('.')[1].lower()}",
                name,
                vendor.read_bytes(),
                SUCCESS,
                check=labels_of_shape(shape),
                reader_shape=shape,
                note="real vendor file, cut down: read and segmented in its own geometry",
            )


def _strip_pixels(path: Path) -> None:
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)


def _model_cards(b: CorpusBuilder) -> None:
    """`reseg segment --model <copy of a bundled model whose card is damaged>` on a good scan."""
    from reseg.zoo.catalogue import bundled_model_dir

    scan = _png((b.rng.random((64, 96)) * 200).astype(np.uint8))
    card = json.loads((bundled_model_dir() / "lightreseg-oct.json").read_text())
    weights = bundled_model_dir() / "lightreseg-oct.safetensors"
    edits: dict[str, Callable[[dict], None]] = {
        "spacing_zero": lambda c: c.update(input_spacing=[0.0, 0.0]),
        "spacing_nan": lambda c: c.update(input_spacing=[float("nan"), 0.01]),
        "spacing_tiny": lambda c: c.update(input_spacing=[1e-4, 1e-4]),
        "percentile_negative": lambda c: c["normalization"].update(lower=-5),
        "percentile_150": lambda c: c["normalization"].update(upper=150),
        "window_flat": lambda c: c.update(normalization={"method": "window", "low": 40, "high": 40}),
        "unknown_normalisation": lambda c: c.update(normalization={"method": "zscore"}),
        "negative_num_classes": lambda c: c["arguments"].update(num_classes=-3),
        "huge_argument": lambda c: c["arguments"].update(num_classes=2_000_000_000),
        "classes_not_a_list": lambda c: c.update(classes="vitreous"),
        "class_colour_text": lambda c: c["classes"][0].update(color="red"),
        "missing_architecture": lambda c: c.pop("architecture"),
        "name_with_path": lambda c: c.update(name="../../evil"),
        "unknown_architecture": lambda c: c.update(architecture="resnet9000"),
    }
    for label, edit in edits.items():
        changed = json.loads(json.dumps(card))
        edit(changed)
        case = b.case(
            f"card_{label}",
            ["segment", "{in}/scan.png", "-o", "{out}/labels.tif", "--model", "{in}/model.safetensors"],
            ERROR,
        )
        (case.inputs / "scan.png").write_bytes(scan)
        shutil.copy(weights, case.inputs / "model.safetensors")
        (case.inputs / "model.json").write_text(json.dumps(changed, allow_nan=True))
    case = b.case(
        "card_not_json",
        ["segment", "{in}/scan.png", "-o", "{out}/labels.tif", "--model", "{in}/model.safetensors"],
        ERROR,
    )
    (case.inputs / "scan.png").write_bytes(scan)
    shutil.copy(weights, case.inputs / "model.safetensors")
    (case.inputs / "model.json").write_text("{ not json")
    _weights(b, scan, card)


def _weights(b: CorpusBuilder, scan: bytes, card: dict) -> None:
    import torch
    from safetensors.torch import save_file

    from reseg.zoo.weights import load_model

    state = {k: v.contiguous() for k, v in load_model("lightreseg-oct", device="cpu").network.state_dict().items()}
    unhashed = {key: value for key, value in card.items() if key != "weights_sha256"}

    def model_case(name: str, write: Callable[[Path], None], suffix: str = ".safetensors") -> None:
        case = b.case(
            name,
            [
                "segment",
                "{in}/scan.png",
                "-o",
                "{out}/labels.tif",
                "--model",
                f"{{in}}/model{suffix}",
                "--card",
                "{in}/card.json",
            ],
            ERROR,
        )
        (case.inputs / "scan.png").write_bytes(scan)
        (case.inputs / "card.json").write_text(json.dumps({**unhashed, "name": "damaged"}))
        write(case.inputs / f"model{suffix}")

    model_case(
        "weights_all_nan",
        lambda p: save_file(
            {
                k: torch.full_like(v, float("nan")).contiguous() if v.is_floating_point() else v
                for k, v in state.items()
            },
            str(p),
        ),
    )
    model_case("weights_truncated", lambda p: (save_file(state, str(p)), p.write_bytes(p.read_bytes()[:5000])))
    model_case("weights_random_bytes", lambda p: p.write_bytes(b.rng.bytes(20000)))

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    model_case("weights_pickled_code", lambda p: torch.save({"state_dict": Payload()}, p), suffix=".pt")
    model_case("weights_wrong_shapes", lambda p: save_file({"head.weight": torch.zeros(3, 3)}, str(p)))


def reviewed_session(case: Case, scan_data: np.ndarray, reviewed: tuple[int, ...]) -> Path:
    """A scan `in/scan.tif` and its saved review session with `reviewed` slices; the case exports it."""
    from reseg.classes import OCT_CLASSES
    from reseg.io import read_volume
    from reseg.review.session import save_session, session_path_for, start_session
    from reseg.review.state import SliceStatus

    scan = case.inputs / "scan.tif"
    tifffile.imwrite(scan, scan_data, photometric="minisblack")
    session = start_session(read_volume(scan), np.ones_like(scan_data), list(OCT_CLASSES), "lightreseg-oct")
    for index in reviewed:
        session.review.mark(index, SliceStatus.REVIEWED)
    path = save_session(session_path_for(scan), session)
    case.argv[1] = str(path)
    return path


def _sessions(b: CorpusBuilder) -> None:
    """`reseg export SESSION -o OUT` with damaged session files."""
    scan_data = (b.rng.random((4, 48, 64)) * 200).astype(np.uint8)

    def session_case(
        name: str,
        expect: str,
        damage: Callable[[Path], None] | None,
        check: Callable[[Path, Path], str | None] | None = None,
    ) -> None:
        case = b.case(name, ["export", "", "-o", "{out}/dataset"], expect, check=check)
        path = reviewed_session(case, scan_data, reviewed=(0, 2))
        if damage is not None:
            damage(path)

    session_case("session_valid", SUCCESS, None, exported(2))
    header_edits: dict[str, Callable[[dict], None]] = {
        "version_text": lambda h: h.update(version="one"),
        "version_future": lambda h: h.update(version=99),
        "spacing_nan": lambda h: h.update(spacing=[float("nan"), 1, 1]),
        "spacing_zero": lambda h: h.update(spacing=[0, 0, 0]),
        "shape_not_list": lambda h: h.update(shape="4x48x64"),
        "classes_missing": lambda h: h.pop("classes"),
        "review_short": lambda h: h["review"].update(slices=h["review"]["slices"][:2]),
        "review_bad_status": lambda h: h["review"]["slices"][0].update(status="approved"),
        "model_not_object": lambda h: h.update(model="lightreseg"),
        "source_missing_field": lambda h: h.pop("source"),
        "not_our_format": lambda h: h.update(format="something-else"),
    }
    for label, edit in header_edits.items():
        session_case(f"session_{label}", ERROR, lambda path, edit=edit: _edit_session_header(path, edit))
    session_case("session_not_a_zip", ERROR, lambda path: path.write_bytes(b"PK\3\4 garbage" * 10))
    session_case("session_truncated", ERROR, lambda path: path.write_bytes(path.read_bytes()[:300]))
    session_case("session_labels_missing", ERROR, lambda path: _drop_member(path, "labels.npy"))
    session_case("session_labels_pickled", ERROR, lambda path: _replace_member(path, "labels.npy", _pickled_npy()))
    session_case(
        "session_scan_changed",
        ERROR,
        lambda path: tifffile.imwrite(path.parent / "scan.tif", np.zeros((4, 48, 64), np.uint8)),
    )
    session_case("session_scan_deleted", ERROR, lambda path: (path.parent / "scan.tif").unlink())


def _edit_session_header(path: Path, edit: Callable[[dict], None]) -> None:
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("session.json"))
    edit(header)
    _replace_member(path, "session.json", json.dumps(header).encode())


def _replace_member(path: Path, name: str, content: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[name] = content
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def _drop_member(path: Path, name: str) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist() if info.filename != name}
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)


def _pickled_npy() -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _export_folders(b: CorpusBuilder) -> None:
    """`reseg export` of a good session into a destination that already holds a hostile or damaged export."""
    from reseg.classes import OCT_CLASSES

    scan_data = (b.rng.random((3, 32, 40)) * 200).astype(np.uint8)
    classes = [c.to_dict() for c in OCT_CLASSES]

    def export_case(
        name: str, expect: str, prepare: Callable[[Path], None], check: Callable[[Path, Path], str | None] | None = None
    ) -> None:
        case = b.case(name, ["export", "", "-o", "{out}/dataset"], expect, check=check)
        reviewed_session(case, scan_data, reviewed=(1,))
        destination = case.output / "dataset"
        destination.mkdir()
        prepare(destination)

    def manifest(items: list, **extra) -> Callable[[Path], None]:
        content = {
            "format": "reseg-dataset",
            "version": 1,
            "modality": "unknown",
            "classes": classes,
            "ignore_index": 255,
            "items": items,
            **extra,
        }
        return lambda folder: (folder / "dataset.json").write_text(json.dumps(content))

    def item(image: str, label: str, index: int = 1) -> dict:
        return {"image": image, "label": label, "scan": "scan", "source_sha256": "0" * 64, "slice": index}

    export_case(
        "export_escaping_names", ERROR, manifest([item("../../../escaped_image.tif", "../../../escaped_label.tif")])
    )
    export_case("export_absolute_names", ERROR, manifest([item("/tmp/reseg_corpus_absolute.tif", "labels/x.tif")]))
    export_case("export_item_without_image", ERROR, manifest([{"label": "labels/x.tif", "slice": 0}]))
    export_case("export_items_not_a_list", ERROR, manifest("everything"))  # type: ignore[arg-type]
    export_case("export_manifest_not_json", ERROR, lambda f: (f / "dataset.json").write_text("{"))
    export_case("export_manifest_a_list", ERROR, lambda f: (f / "dataset.json").write_text("[]"))
    export_case("export_bad_label_sets", ERROR, manifest([], label_sets={"x": "y"}))

    def symlinked_images(folder: Path) -> None:
        elsewhere = folder.parents[3] / "elsewhere"
        elsewhere.mkdir()
        (folder / "images").symlink_to(elsewhere, target_is_directory=True)
        manifest([item("images/scan_s0000.tif", "labels/scan_s0000.tif", 0)])(folder)

    export_case("export_images_symlinked_outside", ERROR, symlinked_images)

    def killed_before_commit(folder: Path) -> None:
        staging = folder / ".reseg-staged-999999-deadbeef" / "images"
        staging.mkdir(parents=True)
        (staging / "scan_s0001.tif").write_bytes(b"half")

    export_case("export_after_a_killed_export", SUCCESS, killed_before_commit, exported(1))
    export_case("export_into_a_file", ERROR, lambda f: (f.rmdir(), f.write_text("not a folder")))
