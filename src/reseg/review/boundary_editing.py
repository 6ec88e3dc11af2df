"""Editing OCT layer boundaries instead of painting layers: the GUI-free half of the boundary editor.

Graders correct a segmentation by moving the lines between layers (Heidelberg Eye Explorer, OCTExplorer,
eyelab all work this way), not by painting eight thin bands. Here a B-scan's labels become its 8 boundary
heights per A-scan (the convention of `reseg.inference.surfaces`: boundary k is the first row of class k + 1),
a grader's stroke moves one boundary over some columns, the others give way so that no two ever cross (a
layer may shrink to nothing, never turn inside out), and only the columns that changed get new labels, built
from their boundaries. Intraretinal fluid the labels had stays where it was as long as it is still inside the
retina.

"Snap" re-routes a stretch of one boundary through the path the model finds most likely between the grader's
anchor points: the graph search of Garvin et al. (IEEE TMI 28(9), 2009) and Chiu et al. (Opt. Express 18(18),
2010), here a shortest path over the columns with a bounded step between neighbouring A-scans, whose cost at a
row is how unlikely, under the model's class probabilities, the boundary is to lie there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from reseg.classes import OCT_BOUNDARIES, OCT_FLUID
from reseg.evaluation.evaluate import boundary_rows
from reseg.inference.surfaces import labels_from_surfaces

N_BOUNDARIES = len(OCT_BOUNDARIES)
_FLOOR = 1e-6  # probabilities below this count as this (log 0 would forbid a row outright)
STEP_PENALTY = 0.5  # cost per row a snapped boundary moves between neighbouring A-scans: prefers smooth paths


def bscan_boundaries(labels: np.ndarray) -> np.ndarray:
    """(8, W) float boundary heights of one (H, W) B-scan's labels, every one defined: an A-scan without a
    class below a boundary has that boundary at the bottom (H), so every column can be edited."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected one (H, W) B-scan, got shape {labels.shape}")
    heights = boundary_rows(labels[None])[:, 0, :]
    heights[~np.isfinite(heights)] = labels.shape[0]
    return np.maximum.accumulate(heights, axis=0)


def move_boundary(heights: np.ndarray, boundary: int, columns: np.ndarray, rows: np.ndarray, height: int) -> np.ndarray:
    """Heights with `boundary` set to `rows` at `columns` (clipped to the B-scan), pushing the boundaries above
    up and those below down where they would cross it: a layer can become 0 rows thick, never negative."""
    if not 0 <= boundary < len(heights):
        raise ValueError(f"boundary must be 0..{len(heights) - 1}, got {boundary}")
    moved = np.array(heights, dtype=np.float64, copy=True)
    columns = np.asarray(columns, dtype=np.intp)
    moved[boundary, columns] = np.clip(np.rint(rows), 0, height)
    line = moved[boundary, columns]
    moved[:boundary, columns] = np.minimum(moved[:boundary, columns], line)
    moved[boundary + 1 :, columns] = np.maximum(moved[boundary + 1 :, columns], line)
    return moved


def relabel_columns(labels: np.ndarray, heights: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(H, len(columns)) labels of `columns` rebuilt from their boundary heights; the fluid `labels` had there
    is kept where it is still strictly inside the retina (elsewhere it becomes the layer it lies in)."""
    columns = np.asarray(columns, dtype=np.intp)
    height = labels.shape[0]
    surfaces = heights[:, columns].astype(np.int64)[:, None, :]  # (8, 1, n)
    fluid = (labels[:, columns] == OCT_FLUID)[None]
    return labels_from_surfaces(surfaces, height, fluid)[0]


def edited_pixels(
    labels: np.ndarray, heights: np.ndarray, columns: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and new values of the pixels of `labels` (H, W) that change when `columns` are rebuilt
    from `heights`: what an undoable edit of the labels layer writes."""
    columns = np.unique(np.asarray(columns, dtype=np.intp))
    rebuilt = relabel_columns(labels, heights, columns)
    rows, which = np.nonzero(rebuilt != labels[:, columns])
    return rows, columns[which], rebuilt[rows, which]


def stroke_columns(points: Sequence[tuple[float, float]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows a freehand stroke of (row, column) points covers, in the order drawn: the segments
    between successive points are filled column by column, and where the stroke comes back over a column the
    later pass wins (a grader redrawing a stretch corrects themselves by drawing over it again)."""
    if not points:
        return np.zeros(0, np.intp), np.zeros(0)
    chosen: dict[int, float] = {}
    previous = points[0]
    for point in points:
        (r0, c0), (r1, c1) = previous, point
        steps = max(1, round(abs(c1 - c0)))
        for t in np.linspace(0.0, 1.0, steps + 1):
            column = round(c0 + t * (c1 - c0))
            if 0 <= column < width:
                chosen[column] = r0 + t * (r1 - r0)
        previous = point
    columns = np.fromiter(sorted(chosen), dtype=np.intp)
    return columns, np.array([chosen[c] for c in columns])


def drag_profile(centre: int, radius: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns within `radius` of `centre` and their weights (1 at the centre, a raised cosine to 0 at the
    edge): dragging one point of a boundary bends it smoothly over its neighbours, as a grader pulls a line."""
    radius = max(int(radius), 0)
    columns = np.arange(max(centre - radius, 0), min(centre + radius, width - 1) + 1)
    distance = np.abs(columns - centre) / (radius + 1)
    return columns, 0.5 * (1.0 + np.cos(np.pi * distance))


def boundary_cost(probabilities: np.ndarray, boundary: int) -> np.ndarray:
    """(H + 1, W): at row r, minus the log-likelihood of the boundary lying just above row r in each A-scan:
    every row above it of a class above the boundary, every row from r down of a class below it.

    `probabilities` (C, H, W) are the model's class probabilities (OCT classes, fluid last); fluid counts as
    "inside the retina", below the ILM and above BM, whatever the boundary.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    fluid = probabilities[OCT_FLUID] if probabilities.shape[0] > OCT_FLUID else 0.0
    above = probabilities[: boundary + 1].sum(axis=0)
    below = probabilities[boundary + 1 : OCT_FLUID].sum(axis=0)
    if boundary == 0:
        below = below + fluid
    elif boundary == N_BOUNDARIES - 1:
        above = above + fluid
    else:  # inside the retina: fluid says nothing about which side
        above, below = above + fluid / 2, below + fluid / 2
    log_above = np.log(np.maximum(above, _FLOOR))
    log_below = np.log(np.maximum(below, _FLOOR))
    height, width = log_above.shape
    cost = np.zeros((height + 1, width))
    cost[1:] -= np.cumsum(log_above, axis=0)  # rows 0..r-1 above
    cost[:-1] -= np.cumsum(log_below[::-1], axis=0)[::-1]  # rows r..H-1 below
    return cost


def snap_path(cost: np.ndarray, anchors: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest boundary through every (column, row) anchor, over the columns from the first anchor to the
    last: columns and rows. Between neighbouring A-scans the boundary moves at most a few rows (more where two
    anchors demand it), each row costing :data:`STEP_PENALTY`."""
    points = sorted({int(c): float(r) for c, r in anchors}.items())
    if len(points) < 2:
        raise ValueError("snapping needs at least two anchor points in different A-scans")
    n_rows = cost.shape[0]
    columns: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    for (c0, r0), (c1, r1) in itertools.pairwise(points):
        segment = _shortest_path(
            cost[:, c0 : c1 + 1], int(np.clip(round(r0), 0, n_rows - 1)), int(np.clip(round(r1), 0, n_rows - 1))
        )
        start = 0 if not columns else 1  # the shared anchor column once
        columns.append(np.arange(c0, c1 + 1)[start:])
        rows.append(segment[start:])
    return np.concatenate(columns), np.concatenate(rows).astype(np.float64)


def _shortest_path(cost: np.ndarray, start_row: int, end_row: int) -> np.ndarray:
    """Rows of the cheapest path from (start_row, column 0) to (end_row, last column) of `cost` (R, n)."""
    n_rows, n_columns = cost.shape
    if n_columns == 1:
        return np.array([start_row])
    need = int(np.ceil(abs(end_row - start_row) / (n_columns - 1)))
    max_step = max(3, need)
    total = np.full(n_rows, np.inf)
    total[start_row] = cost[start_row, 0]
    came_from = np.zeros((n_columns, n_rows), dtype=np.intp)
    rows = np.arange(n_rows)
    for column in range(1, n_columns):
        best = np.full(n_rows, np.inf)
        best_from = rows.copy()
        for step in range(-max_step, max_step + 1):
            source = rows - step
            valid = (source >= 0) & (source < n_rows)
            candidate = np.full(n_rows, np.inf)
            candidate[valid] = total[source[valid]] + STEP_PENALTY * abs(step)
            better = candidate < best
            best[better], best_from[better] = candidate[better], source[better]
        total = best + cost[:, column]
        came_from[column] = best_from
    path = np.empty(n_columns, dtype=np.intp)
    path[-1] = end_row
    for column in range(n_columns - 1, 0, -1):
        path[column - 1] = came_from[column, path[column]]
    return path


def nearest_boundary(heights: np.ndarray, column: int, row: float) -> int:
    """The boundary closest to `row` in A-scan `column`; of boundaries at the same row (a vanished layer),
    the one on the side the point is: above them the upper one, below them the lower one."""
    line = heights[:, column]
    distance = np.abs(line - row)
    closest = np.flatnonzero(distance == distance.min())
    return int(closest[0] if row <= line[closest[0]] else closest[-1])
