"""Tests of the OCT topology check and fix (reseg.topology) on phantoms with planted errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reseg.classes import IGNORE_INDEX, OCT_FLUID
from reseg.data.phantom import OCTPhantom, make_oct_phantom
from reseg.topology import check_oct_topology, confine_to_retina, fix_oct_topology

INL, ONL, CHOROID = 3, 5, 8
BAND = slice(100, 260)  # columns of the planted INL/ONL swap


@pytest.fixture(scope="module")
def phantom() -> OCTPhantom:
    return make_oct_phantom(n_bscans=4, seed=3, fluid=True)


def _swap_inl_onl(labels: np.ndarray, z: int) -> None:
    band = labels[z, :, BAND]
    inl, onl = band == INL, band == ONL
    band[inl], band[onl] = ONL, INL


def _ordered(column: np.ndarray) -> bool:
    """The order rule, spelled out one A-scan at a time: an independent reference for the vectorised check."""
    classes = [int(v) for v in column if v < OCT_FLUID]  # fluid and ignore skipped
    return all(a <= b for a, b in itertools.pairwise(classes))


@pytest.fixture(scope="module")
def planted(phantom: OCTPhantom) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The phantom with an INL/ONL swap (B-scan 1), fluid in the vitreous and the choroid (B-scan 2), a
    choroid patch in the vitreous (B-scan 3) and a band of ignore pixels across B-scans 1 and 3."""
    labels = phantom.labels.copy()
    labels[[1, 3], 235:245, :] = IGNORE_INDEX  # through the middle of the retina, INL and ONL included
    _swap_inl_onl(labels, 1)
    swapped = np.array([c for c in range(BAND.start, BAND.stop) if not _ordered(labels[1, :, c])])
    labels[2, 3:8, 400:420] = OCT_FLUID  # 5 px per A-scan, far above the ILM (top margin >= 34 rows)
    labels[2, -3:, 600:610] = OCT_FLUID  # 3 px per A-scan at the bottom of the choroid
    labels[3, 10:14, 700:705] = CHOROID
    return labels, {"swapped": swapped}


def test_phantom_is_ok(phantom: OCTPhantom) -> None:
    assert (phantom.labels == OCT_FLUID).any()
    report = check_oct_topology(phantom.labels)
    assert report.ok and report.problem_slices == []
    assert report.broken.shape == (0, 2) and report.misplaced_fluid.shape == (0, 2)
    assert report.broken_per_slice.tolist() == report.misplaced_fluid_per_slice.tolist() == [0, 0, 0, 0]
    fixed = fix_oct_topology(phantom.labels)
    assert fixed is not phantom.labels
    np.testing.assert_array_equal(fixed, phantom.labels)


def test_check_lists_exactly_the_planted_errors(planted: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    labels, where = planted
    swapped = where["swapped"]
    assert len(swapped) > 100  # the swap hits most of the band, not a degenerate corner
    report = check_oct_topology(labels)
    assert not report.ok
    expected_broken = [(1, int(c)) for c in swapped] + [(3, c) for c in range(700, 705)]
    assert [tuple(p) for p in report.broken.tolist()] == expected_broken
    expected_fluid = [(2, c) for c in range(400, 420)] + [(2, c) for c in range(600, 610)]
    assert [tuple(p) for p in report.misplaced_fluid.tolist()] == expected_fluid
    assert report.misplaced_fluid_pixels.tolist() == [5] * 20 + [3] * 10
    assert report.broken_per_slice.tolist() == [0, len(swapped), 0, 5]
    assert report.misplaced_fluid_per_slice.tolist() == [0, 0, 130, 0]
    assert report.problem_slices == [1, 2, 3]


def test_fix_makes_it_ok_and_touches_only_flagged_ascans(planted: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    labels, where = planted
    before = labels.copy()
    fixed = fix_oct_topology(labels)
    np.testing.assert_array_equal(labels, before)  # the input is untouched
    assert fixed.shape == labels.shape and fixed.dtype == labels.dtype
    assert check_oct_topology(fixed).ok

    report = check_oct_topology(labels)
    flagged = np.zeros((labels.shape[0], labels.shape[2]), dtype=bool)
    flagged[tuple(report.broken.T)] = True
    flagged[tuple(report.misplaced_fluid.T)] = True
    untouched = ~flagged[:, None, :].repeat(labels.shape[1], axis=1)
    np.testing.assert_array_equal(fixed[untouched], labels[untouched])

    # Every re-ordered A-scan keeps each class's pixel count, and its fluid stays where it was.
    for column in where["swapped"]:
        original, repaired = labels[1, :, column], fixed[1, :, column]
        np.testing.assert_array_equal(np.bincount(repaired, minlength=256), np.bincount(original, minlength=256))
        np.testing.assert_array_equal(repaired == OCT_FLUID, original == OCT_FLUID)
    # Misplaced fluid takes the class around it; a choroid patch in the vitreous sinks to the choroid.
    assert (fixed[2, 3:8, 400:420] == 0).all()
    assert (fixed[2, -3:, 600:610] == CHOROID).all()
    assert (fixed[3, 10:14, 700:705] == 0).all()


def test_ignore_pixels_are_neither_violations_nor_changed(
    phantom: OCTPhantom, planted: tuple[np.ndarray, dict[str, np.ndarray]]
) -> None:
    labels = phantom.labels.copy()
    labels[0, 150:400:7, :] = IGNORE_INDEX  # unknown rows across the whole retina
    labels[0, :, 50:60] = IGNORE_INDEX  # and whole unknown A-scans
    assert check_oct_topology(labels).ok

    planted_labels, _ = planted
    fixed = fix_oct_topology(planted_labels)
    ignored = planted_labels == IGNORE_INDEX
    np.testing.assert_array_equal(fixed == IGNORE_INDEX, ignored)


def test_single_bscan_and_hand_made_columns() -> None:
    # Columns (top to bottom) as a (H, W) B-scan: ordered, ordered with inner fluid, INL above GCL+IPL,
    # vitreous below a layer, and fluid that the re-ordering pushes above the ILM.
    columns = np.array(
        [
            [0, 0, 1, 2, 3, 6, 7, 8],
            [0, 1, 3, 9, 9, 5, 7, 8],
            [0, 1, 3, 2, 4, 5, 7, 8],
            [0, 1, 0, 2, 9, 7, 8, 8],
            [0, 3, 9, 0, 0, 1, 7, 8],
        ],
        dtype=np.uint8,
    )
    report = check_oct_topology(columns.T)
    assert report.broken.tolist() == [[0, 2], [0, 3], [0, 4]]
    assert report.misplaced_fluid.shape == (0, 2)
    fixed = fix_oct_topology(columns.T).T
    assert fixed.tolist() == [
        [0, 0, 1, 2, 3, 6, 7, 8],
        [0, 1, 3, 9, 9, 5, 7, 8],
        [0, 1, 2, 3, 4, 5, 7, 8],
        [0, 0, 1, 2, 9, 7, 8, 8],
        [0, 0, 0, 0, 1, 3, 7, 8],  # the fluid, now above the ILM, became the vitreous around it
    ]
    assert check_oct_topology(fixed.T).ok


def test_random_columns_match_the_rules_spelled_out() -> None:
    """Nearly ordered random A-scans (a few pixels overwritten with any class, fluid or ignore): the check
    agrees with the per-column reference, and the fix repairs all of them."""
    rng = np.random.default_rng(0)
    columns = np.sort(rng.integers(0, 9, size=(3000, 16)), axis=1).astype(np.uint8)
    hits = rng.random(columns.shape) < 0.08
    columns[hits] = rng.choice([*range(10), IGNORE_INDEX], size=int(hits.sum()))
    bscan = columns.T  # one B-scan of 3000 A-scans
    report = check_oct_topology(bscan)

    def misplaced(column: np.ndarray) -> int:
        layer_rows = [i for i, v in enumerate(column) if 1 <= v <= 7]
        return sum(
            1
            for i, v in enumerate(column)
            if v == OCT_FLUID and (not layer_rows or i < layer_rows[0] or i > layer_rows[-1])
        )

    expected_broken = [c for c, column in enumerate(columns) if not _ordered(column)]
    expected_fluid = {c: n for c, column in enumerate(columns) if (n := misplaced(column))}
    assert 0 < len(expected_broken) < len(columns) and expected_fluid
    assert report.broken[:, 1].tolist() == expected_broken
    assert (
        dict(zip(report.misplaced_fluid[:, 1].tolist(), report.misplaced_fluid_pixels.tolist(), strict=True))
        == expected_fluid
    )

    fixed = fix_oct_topology(bscan).T
    assert check_oct_topology(fixed.T).ok
    np.testing.assert_array_equal(fixed == IGNORE_INDEX, columns == IGNORE_INDEX)
    # Per A-scan, every class keeps its pixel count, except that misplaced fluid turned into classes.
    before = (columns[..., None] == np.arange(256)).sum(axis=1)
    gained = (fixed[..., None] == np.arange(256)).sum(axis=1) - before
    converted = -gained[:, OCT_FLUID]
    assert (converted >= 0).all() and (gained[:, :OCT_FLUID] >= 0).all() and not gained[:, OCT_FLUID + 1 :].any()
    np.testing.assert_array_equal(gained[:, :OCT_FLUID].sum(axis=1), converted)
    assert converted.sum() >= sum(expected_fluid.values())  # at least the fluid that was outside already


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no class"):
        check_oct_topology(np.full((4, 4), 12, dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        check_oct_topology(np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="integers"):
        fix_oct_topology(np.zeros((4, 4), dtype=np.float32))


def test_check_and_fix_a_full_size_volume(phantom: OCTPhantom) -> None:
    labels = np.resize(phantom.labels, (49, *phantom.labels.shape[1:]))  # 49 x 496 x 768
    for z in range(0, 49, 5):
        _swap_inl_onl(labels, z)
    report = check_oct_topology(labels)
    fixed = fix_oct_topology(labels)
    assert report.problem_slices == list(range(0, 49, 5)) and check_oct_topology(fixed).ok


def test_confine_to_retina_clears_specks_outside_the_retina_and_nothing_inside(phantom: OCTPhantom) -> None:
    truth = phantom.labels
    specked = truth.copy()
    specked[0, 5:25, 100:400] = OCT_FLUID  # "fluid" in the vitreous, as a model meeting a new device makes
    specked[1, 10:14, 300:320] = 6  # a small bright speck called ellipsoid zone
    specked[2, -40:-20, 50:90] = OCT_FLUID  # fluid deep in the sclera
    specked[3, :8, :] = IGNORE_INDEX  # not reviewed: stays as it is
    confined = confine_to_retina(specked)
    expected = truth.copy()
    expected[3, :8, :] = IGNORE_INDEX
    np.testing.assert_array_equal(confined, expected)
    assert check_oct_topology(confined[:3]).ok
    np.testing.assert_array_equal(confine_to_retina(truth[0]), truth[0])  # a 2-D B-scan, already clean


def test_confine_to_retina_keeps_a_retina_cut_in_two_and_leaves_empty_columns() -> None:
    labels = np.zeros((1, 60, 40), np.uint8)
    labels[0, 20:30, :] = 4
    labels[0, 30:, :] = CHOROID
    labels[0, :, 18:22] = 0  # a shadow cuts the retina (and all else) in two
    labels[0, 2:4, 5:9] = 2  # a small layer speck in the vitreous
    confined = confine_to_retina(labels)
    assert (confined[0, 20:30, :18] == 4).all() and (confined[0, 20:30, 22:] == 4).all()
    assert (confined[0, 2:4, 5:9] == 0).all()
    np.testing.assert_array_equal(confined[0, :, 18:22], 0)  # no retina in those columns: untouched
