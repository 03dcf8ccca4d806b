"""IoU, centre hits and one-to-one matching (Hungarian, with and without scipy), by hand."""

from __future__ import annotations

import random
import sys

import pytest

from medground.evaluate import centre_inside, iou, match_boxes
from medground.evaluate.match import _hungarian


def test_iou_and_centre_hits_by_hand():
    assert iou([0, 0, 10, 10], [5, 5, 15, 15]) == pytest.approx(25 / 175)  # 5x5 overlap of two 100s
    assert iou([0, 0, 10, 10], [0, 0, 10, 5]) == 0.5
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([5, 5, 5, 5], [0, 0, 10, 10]) == 0.0
    assert iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0
    # Continuous edges: pixel columns 0..9 are [0, 10), not 11 columns.
    assert iou([0, 0, 10, 10], [0, 0, 11, 10]) == pytest.approx(100 / 110)
    assert centre_inside([0, 0, 10, 10], [5, 5, 6, 6])  # centre (5, 5) on the min edges: inside
    assert not centre_inside([0, 0, 10, 10], [0, 0, 5, 5])  # on the max edges: outside


def test_3d_iou_and_centre_hits_count_voxels():
    """3D boxes (``[i, j, k]_min + [i, j, k]_max``, voxel edges): IoU is the shared voxels
    over the voxels of either box, counted one by one on a grid; the centre rule is the
    same half-open rule as in 2D."""
    import numpy as np

    rng = np.random.default_rng(7)
    for _ in range(200):
        boxes = []
        for _ in range(2):
            low = rng.integers(0, 8, 3)
            boxes.append([*low.tolist(), *(low + rng.integers(0, 6, 3)).tolist()])
        grids = []
        for box in boxes:
            grid = np.zeros((14, 14, 14), dtype=bool)
            grid[box[0] : box[3], box[1] : box[4], box[2] : box[5]] = True
            grids.append(grid)
        union = np.logical_or(*grids).sum()
        expected = np.logical_and(*grids).sum() / union if union else 0.0
        assert iou(*boxes) == pytest.approx(expected)
        centre = [(boxes[0][k] + boxes[0][k + 3]) / 2 for k in range(3)]
        inside = all(boxes[1][k] <= centre[k] < boxes[1][k + 3] for k in range(3))
        assert centre_inside(boxes[0], boxes[1]) == inside
    assert iou([0, 0, 0, 10, 10, 10], [0, 0, 0, 10, 10, 5]) == 0.5
    assert match_boxes([[0, 0, 0, 4, 4, 4]], [[0, 0, 0, 4, 4, 4], [9, 9, 9, 12, 12, 12]]).hits == 1
    with pytest.raises(ValueError, match="different dimensions"):
        iou([0, 0, 1, 1], [0, 0, 0, 1, 1, 1])


def test_matching_is_one_to_one_and_not_greedy_in_order():
    truth = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    predicted = [[100, 100, 110, 110], [20, 0, 30, 10], [0, 0, 10, 5], [21, 0, 30, 10]]
    matching = match_boxes(predicted, truth)
    # B is claimed by an exact box and a 0.9 box; only one may have it. A gets its 0.5 box.
    assert matching.hits == 2
    assert {(p, t) for p, t, value in matching.pairs if value >= 0.5} == {(1, 1), (2, 0)}
    assert len({p for p, _, _ in matching.pairs}) == len(matching.pairs) == 3


def test_matching_maximises_hits_before_summed_iou():
    # A = [0,0,10,10], B = [0,0,10,5]; p = A, q = [0,2,10,12].
    # IoU(p,A) = 1, IoU(p,B) = 0.5, IoU(q,A) = 80/120 = 0.667, IoU(q,B) = 30/120 = 0.25.
    # Most summed IoU is p-A + q-B = 1.25 with one hit; p-B + q-A = 1.167 has two.
    matching = match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]])
    assert matching.hits == 2
    assert [(p, t) for p, t, _ in matching.pairs] == [(0, 1), (1, 0)]


def test_hungarian_fallback_is_exact_and_used_without_scipy(monkeypatch):
    optimize = pytest.importorskip("scipy.optimize")
    rng = random.Random(0)
    for _ in range(300):
        n, m = rng.randint(1, 7), rng.randint(1, 7)
        weights = [[rng.random() for _ in range(m)] for _ in range(n)]
        rows, cols = optimize.linear_sum_assignment(weights, maximize=True)
        best = sum(weights[i][j] for i, j in zip(rows, cols, strict=True))
        pairs = _hungarian(weights)
        assert len(pairs) == min(n, m)
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
        assert sum(weights[i][j] for i, j in pairs) == pytest.approx(best)
    with_scipy = match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]])
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import now fails
    assert match_boxes([[0, 0, 10, 10], [0, 2, 10, 12]], [[0, 0, 10, 10], [0, 0, 10, 5]]) == with_scipy
