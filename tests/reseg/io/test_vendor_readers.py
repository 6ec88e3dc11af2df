"""Vendor OCT readers (.e2e, Heyex XML, Topcon .fda / .fds, Cirrus .img) on the real cut-down files in
../shared/data/vendor_oct and on small exports written here by the formats' documented layouts."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reseg.errors import InputError
from reseg.io import is_supported, read_volume


@pytest.fixture
def vendor(shared_data):
    return lambda name: shared_data("vendor_oct", name)


def test_e2e_holds_one_spectralis_bscan_its_laterality_and_a_2_x_3_fundus(vendor) -> None:
    volume = read_volume(vendor("e2e_minimized.E2E"))
    assert volume.data.shape == (1, 496, 512) and volume.data.dtype == np.uint8
    assert volume.modality == "OCT" and volume.metadata["format"] == "heyex-e2e"
    assert volume.metadata["laterality"] == "OS"
    assert volume.metadata["fundus"].shape == (2, 3)
    # The cut-down export dropped every B-scan record, so the file states no pixel size: none is made up.
    assert volume.metadata["spacing_known"] == (False, False, False)
    assert "boundaries" not in volume.metadata and "bscan_positions" not in volume.metadata
    bscan = volume.data[0].astype(float)
    rows = bscan.mean(axis=1)
    assert rows[:100].mean() < 20 < rows[170:260].mean()  # dark vitreous above, bright retina across the middle
    assert bscan[170:260].mean(axis=0).min() > bscan[:100].mean()  # the retina runs across every A-scan: horizontal


def _e2e_containers(data: bytes) -> list[bytes]:
    """The containers of the cut-down E2E (no directory): 60-byte header, then the data; an image's data size is
    its own size field (the first 4 bytes), which the cut-down export rewrote, others' the header's."""
    containers, position = [], 88  # after the version block and the main directory header
    while position < len(data):
        (size,) = struct.unpack_from("<I", data, position + 24)
        if struct.unpack_from("<I", data, position + 52)[0] == 1073741824:  # an image
            (size,) = struct.unpack_from("<I", data, position + 60)
        containers.append(data[position : position + 60 + size])
        position += 60 + size
    return containers


def _in_series(container: bytes, series_id: int, slice_id: int | None = None) -> bytes:
    header = bytearray(container)
    struct.pack_into("<i", header, 40, series_id)  # the container header's series id
    if slice_id is not None:
        struct.pack_into("<i", header, 44, slice_id)
    return bytes(header)


def test_e2e_with_a_second_series_reads_the_first_and_counts_the_other_without_decoding_it(
    vendor, tmp_path: Path
) -> None:
    """A multi-visit export: the first series with B-scans is read; the other's 20 B-scans (10 MB, enough to
    mislead a directory parse) are never decoded (here one is damaged), and the metadata says how many other
    series the file holds."""
    data = vendor("e2e_minimized.E2E").read_bytes()
    laterality, _, fundus, bscan = _e2e_containers(data)
    damaged = bytearray(bscan)
    struct.pack_into("<I", damaged, 60 + 12, 9999)  # its image header's height: more rows than it holds
    second = [_in_series(c, 557161) for c in (laterality, fundus)]
    second += [_in_series(bscan, 557161, 2 * index) for index in range(19)] + [_in_series(bytes(damaged), 557161, 38)]
    path = tmp_path / "two_visits.E2E"
    path.write_bytes(data + b"".join(second))
    volume = read_volume(path)
    alone = read_volume(vendor("e2e_minimized.E2E"))
    np.testing.assert_array_equal(volume.data, alone.data)
    assert volume.metadata["other_series"] == 1 and alone.metadata["other_series"] == 0
    first_only = tmp_path / "second_first.E2E"
    first_only.write_bytes(data[:88] + b"".join(second))  # the damaged series alone: its B-scan is decoded
    with pytest.raises(InputError, match="cut short") as error:
        read_volume(first_only)
    assert str(first_only) in str(error.value)


def test_fda_holds_one_650_deep_bscan_with_spacing_from_its_header(vendor) -> None:
    volume = read_volume(vendor("fda_minimized.fda"))
    assert volume.data.shape == (1, 650, 512)
    assert volume.metadata["format"] == "topcon-fda" and volume.metadata["laterality"] == "OS"
    assert volume.metadata["spacing_known"] == (False, True, True)  # one B-scan: no distance between B-scans
    assert volume.spacing[1:] == pytest.approx((0.0035, 6.0 / 512))  # @PARAM_SCAN_04: 3.5 um axial, 6 mm wide
    assert volume.metadata["fundus"].shape == (3, 2)  # 2 wide, 3 high
    depth_profile = volume.data[0].mean(axis=1)
    assert 200 < int(depth_profile.argmax()) < 400  # the retina lies mid-depth, the top rows are vitreous
    assert depth_profile[:100].mean() < depth_profile[250:350].mean() / 3


def test_fda_contours_of_the_uncut_scan_are_left_out_and_say_why(vendor) -> None:
    """The cut-down file kept the original 128-B-scan contours beside its single B-scan: they cannot be placed."""
    volume = read_volume(vendor("fda_minimized.fda"))
    assert "boundaries" not in volume.metadata
    assert "RETINA_1 covers 128 x 512" in volume.metadata["boundaries_left_out"]


def _topcon_with(data: bytes, edits: dict[str, Callable[[bytes], bytes]]) -> bytes:
    """A copy of a Topcon file's bytes with the named chunks' data replaced by `edits[name](data)`, each chunk's
    size field rewritten to match (the "FOCT" header, then chunks: name length, name, uint32 size, data)."""
    out, position = bytearray(data[:15]), 15
    while data[position]:
        name_end = position + 1 + data[position]
        (size,) = struct.unpack_from("<I", data, name_end)
        body = data[name_end + 4 : name_end + 4 + size]
        edit = edits.get(data[position + 1 : name_end].decode("latin-1"))
        body = edit(body) if edit else body
        out += data[position:name_end] + struct.pack("<I", len(body)) + body
        position = name_end + 4 + size
    return bytes(out + b"\x00")


def test_fda_contours_that_match_the_bscans_become_device_boundaries(vendor, tmp_path: Path) -> None:
    """The real file's @CONTOUR_INFO, reduced to the row that lies on its B-scan, gives the ILM on the image."""

    def nearest_row(body: bytes) -> bytes:
        width, height, _ = struct.unpack_from("<III", body, 22)
        row = np.frombuffer(body, "<u2", width * height, 34).reshape(height, width)[0]  # nearest the B-scan
        return body[:26] + struct.pack("<II", 1, width * 2) + row.tobytes()

    data = vendor("fda_minimized.fda").read_bytes()
    (tmp_path / "one.fda").write_bytes(_topcon_with(data, {"@CONTOUR_INFO": nearest_row}))
    volume = read_volume(tmp_path / "one.fda")
    ilm, bm = volume.metadata["boundaries"]["ILM"][0], volume.metadata["boundaries"]["BM"][0]
    assert set(volume.metadata["boundaries"]) == {"ILM", "RETINA_2", "RETINA_3", "BM"}
    assert (bm > ilm).all()  # BM below the ILM at every A-scan
    image = volume.data[0].astype(float)
    above = np.array([image[max(int(r) - 25, 0) : int(r) - 5, x].mean() for x, r in enumerate(ilm)])
    below = np.array([image[int(r) + 5 : int(r) + 25, x].mean() for x, r in enumerate(ilm)])
    assert np.mean(below > above + 20) > 0.95  # the device's ILM is the vitreous-retina edge of this image


def test_fds_stub_reads_as_its_4_x_3_x_2_voxels(vendor) -> None:
    volume = read_volume(vendor("fds_minimized.fds"))
    assert volume.data.shape == (4, 3, 2) and volume.metadata["dtype"] == "uint16"
    assert volume.metadata["format"] == "topcon-fds"
    assert volume.spacing == pytest.approx((6.0 / 4, 0.0035, 6.0 / 2))
    assert volume.data.min() == 0 and volume.data.max() == 255  # 16-bit samples stretched to display grey


@pytest.mark.parametrize("name", ["e2e_minimized.E2E", "fda_minimized.fda", "fds_minimized.fds"])
@pytest.mark.parametrize("keep", [0.02, 0.5, 0.97])
def test_cut_vendor_files_are_named_in_one_clear_error(vendor, tmp_path: Path, name: str, keep: float) -> None:
    data = vendor(name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError, match=r"cut short|damaged|holds no") as error:
        read_volume(cut)
    assert str(cut) in str(error.value)


def _jpeg_count_plus_one(body: bytes) -> bytes:
    (count,) = struct.unpack_from("<I", body, 17)  # @IMG_JPEG: uint8, 2 x uint32, width, height, count, uint32
    return body[:17] + struct.pack("<I", count + 1) + body[21:]


@pytest.mark.parametrize(
    ("name", "chunk", "edit"),
    [
        ("fda_minimized.fda", "@IMG_JPEG", _jpeg_count_plus_one),  # lists a B-scan more than it holds
        ("fda_minimized.fda", "@IMG_JPEG", lambda body: body[:20]),  # its header cut short
        ("fda_minimized.fda", "@PARAM_SCAN_04", lambda body: body[:16]),  # the scan sizes cut short
        ("fda_minimized.fda", "@IMG_FUNDUS", lambda body: body[:10]),
        ("fds_minimized.fds", "@IMG_SCAN_03", lambda body: body[:12]),
        ("fds_minimized.fds", "@IMG_OBS", lambda body: body[:19]),  # the raw fundus' size field cut short
    ],
)
def test_topcon_chunk_cut_short_inside_is_named_with_the_file(
    vendor, tmp_path: Path, name: str, chunk: str, edit: Callable[[bytes], bytes]
) -> None:
    """A chunk whose own fields run past its end (the file's chunk list still whole) is one clear error."""
    bad = tmp_path / name
    bad.write_bytes(_topcon_with(vendor(name).read_bytes(), {chunk: edit}))
    with pytest.raises(InputError, match=f"{chunk}.* cut short") as error:
        read_volume(bad)
    assert str(bad) in str(error.value)


@pytest.mark.parametrize("name", ["e2e_minimized.E2E", "fda_minimized.fda"])
def test_vendor_file_with_a_wrong_start_says_what_it_is_not(vendor, tmp_path: Path, name: str) -> None:
    data = bytearray(vendor(name).read_bytes())
    data[:4] = b"JUNK"
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="is not a") as error:
        read_volume(bad)
    assert str(bad) in str(error.value)


def test_fda_bscan_with_damaged_jpeg2000_is_named(vendor, tmp_path: Path) -> None:
    data = bytearray(vendor("fda_minimized.fda").read_bytes())
    start = data.index(b"@IMG_JPEG") + len(b"@IMG_JPEG") + 4 + 25 + 4
    data[start + 100 : start + 4000] = bytes(3900)
    bad = tmp_path / "bad.fda"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="B-scan 0") as error:
        read_volume(bad)
    assert str(bad) in str(error.value)


def _cirrus_name(ascans: int, bscans: int) -> str:
    return f"P1_Macular Cube {ascans}x{bscans}_7-25-2012_15-40-1_OD_sn1_cube_raw.img"


def test_cirrus_cube_comes_the_right_way_up_with_the_cube_spacing(tmp_path: Path) -> None:
    ascans, bscans = 16, 3
    stored = np.zeros((bscans, 1024, ascans), np.uint8)
    stored[:, 100:110, :] = 200  # stored bottom-up: a band 100 samples above the bottom
    stored[:, :, 0] = 50  # and mirrored: the first stored A-scan is the right-most
    path = tmp_path / _cirrus_name(ascans, bscans)
    stored.tofile(path)
    assert is_supported(path)
    volume = read_volume(path)
    assert volume.data.shape == (bscans, 1024, ascans)
    assert (volume.data[:, 1024 - 110 : 1024 - 100, :-1] == 200).all()
    assert (volume.data[:, :50, -1] == 50).all()
    assert volume.spacing == pytest.approx((6.0 / bscans, 2.0 / 1024, 6.0 / ascans))
    assert volume.metadata["laterality"] == "OD" and volume.metadata["scan_pattern"] == "volume"


def test_cirrus_file_whose_size_or_name_does_not_give_the_cube_is_refused(tmp_path: Path) -> None:
    short = tmp_path / _cirrus_name(16, 3)
    short.write_bytes(bytes(16 * 3 * 1024 - 1))
    with pytest.raises(InputError, match="cut short or its name") as error:
        read_volume(short)
    assert str(short) in str(error.value)
    unnamed = tmp_path / "scan.img"
    unnamed.write_bytes(bytes(1024))
    with pytest.raises(InputError, match="name does not give the scan size") as error:
        read_volume(unnamed)
    assert str(unnamed) in str(error.value)


def _heyex_xml_export(
    folder: Path, bscans: np.ndarray, slo: np.ndarray, ilm: np.ndarray, positions: np.ndarray | None = None
) -> Path:
    """A Heyex XML export as the format describes it: Patient/Study/Series/Image elements, each with its
    ImageType, OphthalmicAcquisitionContext (size, scale in mm, start / end on the SLO) and ExamURL.

    `positions` (Z, 4): each B-scan's start x, y and end x, y in mm (a circle's end is its centre); by default
    horizontal lines from x 1 to 4 mm, 0.25 mm apart from y 1 mm."""
    if positions is None:
        positions = np.array([(1.0, 1.0 + 0.25 * index, 4.0, 1.0 + 0.25 * index) for index in range(len(bscans))])
    Image.fromarray(slo).save(folder / "slo.png")
    images = [
        "<Image><ImageNumber>0</ImageNumber><ImageType><Type>LOCALIZER</Type></ImageType>"
        f"<OphthalmicAcquisitionContext><Width>{slo.shape[1]}</Width><Height>{slo.shape[0]}</Height>"
        "<ScaleX>0.0115</ScaleX><ScaleY>0.0116</ScaleY><Angle>30</Angle><Focus>0.5</Focus>"
        "</OphthalmicAcquisitionContext><ImageData><ExamURL>C:\\export\\slo.png</ExamURL></ImageData></Image>"
    ]
    for index, bscan in enumerate(bscans):
        Image.fromarray(bscan).save(folder / f"b{index}.png")
        start_x, start_y, end_x, end_y = positions[index]
        seg = " ".join(f"{v:g}" for v in ilm[index])
        images.append(
            f"<Image><ImageNumber>{index + 1}</ImageNumber><ImageType><Type>OCT</Type></ImageType>"
            f"<OphthalmicAcquisitionContext><Width>{bscan.shape[1]}</Width><Height>{bscan.shape[0]}</Height>"
            "<ScaleX>0.0113</ScaleX><ScaleY>0.0039</ScaleY><ImageQuality>30</ImageQuality>"
            f"<Start><Coord><X>{start_x}</X><Y>{start_y}</Y></Coord></Start>"
            f"<End><Coord><X>{end_x}</X><Y>{end_y}</Y></Coord></End>"
            f"</OphthalmicAcquisitionContext><ImageData><ExamURL>C:\\export\\b{index}.png</ExamURL></ImageData>"
            f"<Segmentation><NumSegmentations>1</NumSegmentations><SegLine><Name>ILM</Name><Array>{seg}</Array>"
            "</SegLine></Segmentation></Image>"
        )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><HEDX><BODY><SWVersion><Version>6.0</Version></SWVersion>'
        "<Patient><ID>1</ID><PatientID>P1</PatientID><Study><Series><ID>7</ID><Laterality>L</Laterality>"
        + "".join(images)
        + "</Series></Study></Patient></BODY></HEDX>"
    )
    path = folder / "export.xml"
    path.write_text(xml, encoding="utf-8")
    return path


def test_heyex_xml_export_gives_bscans_spacing_positions_and_device_ilm(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bscans = rng.integers(0, 255, (3, 40, 60), dtype=np.uint8)
    ilm = np.tile(np.linspace(10, 14, 60), (3, 1))
    ilm[1, 5] = 3.0e38  # the device found no ILM in this A-scan
    path = _heyex_xml_export(tmp_path, bscans, rng.integers(0, 255, (30, 30), dtype=np.uint8), ilm)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, bscans)
    assert volume.metadata["format"] == "heyex-xml" and volume.metadata["laterality"] == "OS"
    assert volume.spacing == pytest.approx((0.25, 0.0039, 0.0113))
    assert volume.metadata["spacing_known"] == (True, True, True)
    np.testing.assert_allclose(volume.metadata["bscan_positions"][2], (1.0, 1.5, 4.0, 1.5))
    assert volume.metadata["fundus"].shape == (30, 30)
    assert volume.metadata["fundus_spacing"] == pytest.approx((0.0116, 0.0115))
    heights = volume.metadata["boundaries"]["ILM"]
    assert np.isnan(heights[1, 5]) and np.isfinite(heights).sum() == heights.size - 1
    np.testing.assert_allclose(heights[0], ilm[0], rtol=1e-5)


def test_heyex_xml_single_circle_bscan_export_is_read_without_a_bscan_distance(tmp_path: Path) -> None:
    """Single line and circle scans are the most common XML exports: one B-scan, so no distance between B-scans."""
    rng = np.random.default_rng(5)
    bscan = rng.integers(0, 255, (1, 40, 60), dtype=np.uint8)
    ilm = np.linspace(10, 14, 60)[None]
    circle = np.array([[5.2, 4.0, 3.5, 4.0]])  # start on the circle, end = its centre (1.7 mm radius)
    path = _heyex_xml_export(tmp_path, bscan, rng.integers(0, 255, (30, 30), dtype=np.uint8), ilm, circle)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, bscan)
    assert volume.metadata["spacing_known"] == (False, True, True)
    assert volume.spacing[1:] == pytest.approx((0.0039, 0.0113))
    np.testing.assert_allclose(volume.metadata["bscan_positions"], circle)
    np.testing.assert_allclose(volume.metadata["boundaries"]["ILM"], ilm, rtol=1e-5)
    assert volume.metadata["fundus"].shape == (30, 30)


def test_heyex_xml_export_missing_its_images_names_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = _heyex_xml_export(
        tmp_path, rng.integers(0, 255, (2, 20, 30), dtype=np.uint8), np.zeros((10, 10), np.uint8), np.ones((2, 30))
    )
    (tmp_path / "b1.png").unlink()
    with pytest.raises(InputError, match=r"b1\.png") as error:
        read_volume(path)
    assert str(path) in str(error.value)


def test_broken_heyex_xml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "export.xml"
    path.write_text("<HEDX><BODY><Patient>", encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_volume(path)
    assert str(path) in str(error.value)


def _analyze_pair(folder: Path) -> Path:
    """An Analyze 7.5 image (.hdr header beside a headerless .img), as neuroimaging tools write it."""
    import nibabel as nib

    path = folder / "brain.img"
    nib.save(nib.AnalyzeImage(np.zeros((8, 8, 4), np.int16), np.eye(4)), path)
    return path


def test_is_supported_takes_vendor_files_by_their_content(vendor, tmp_path: Path) -> None:
    for name in ("e2e_minimized.E2E", "fda_minimized.fda", "fds_minimized.fds"):
        assert is_supported(vendor(name)), name
    rng = np.random.default_rng(6)
    xml = _heyex_xml_export(
        tmp_path, rng.integers(0, 255, (1, 20, 30), np.uint8), np.zeros((9, 9), np.uint8), np.ones((1, 30))
    )
    assert is_supported(xml)


def test_is_supported_declines_other_xml_img_and_vendor_extensions_without_their_magic(vendor, tmp_path: Path) -> None:
    """Other tools' .xml and .img files are declined, so that other readers get them, yet named if read here."""
    other_xml = tmp_path / "settings.xml"
    other_xml.write_text('<?xml version="1.0"?>\n<!-- <HEDX> --><project><HEDX/></project>', encoding="utf-8")
    analyze = _analyze_pair(tmp_path)
    not_e2e = tmp_path / "scan.e2e"
    not_e2e.write_bytes(b"JUNK" + vendor("e2e_minimized.E2E").read_bytes()[4:])
    wrong_size = tmp_path / _cirrus_name(16, 3)
    wrong_size.write_bytes(bytes(16 * 3 * 1024 + 1))
    for path in (other_xml, analyze, not_e2e, wrong_size):
        assert not is_supported(path), path.name
        with pytest.raises(InputError) as error:
            read_volume(path)
        assert str(path) in str(error.value)
    assert not is_supported(tmp_path / "missing.fda")
