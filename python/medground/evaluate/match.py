"""Box overlap and one-to-one matching of predicted to true boxes.

Boxes are ``[x_min, y_min, x_max, y_max]`` in the stored image's continuous pixel-edge
convention, area ``(x_max - x_min) * (y_max - y_min)``; a 3D box is
``[i_min, j_min, k_min, i_max, j_max, k_max]`` in voxel edges of the stored volume (voxel
``i`` spans ``[i, i + 1)``), and its "area" is its volume: every function here reads a box
of ``2n`` numbers as ``n`` minima then ``n`` maxima.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MATCH_THRESHOLD", "Matching", "centre_inside", "iou", "match_boxes"]

MATCH_THRESHOLD = 0.5


def _dims(box: Sequence[float]) -> int:
    if len(box) % 2 or not box:
        raise ValueError(f"a box holds n minima then n maxima; got {len(box)} numbers")
    return len(box) // 2


def _area(box: Sequence[float]) -> float:
    n = _dims(box)
    return math.prod(max(0.0, box[n + axis] - box[axis]) for axis in range(n))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes of the same dimension (``[x_min, y_min, x_max,
    y_max]``, or ``[i, j, k]_min + [i, j, k]_max`` in 3D; continuous edges, area or volume
    the product of the extents); 0 when the union is empty."""
    n = _dims(a)
    if _dims(b) != n:
        raise ValueError(f"boxes of different dimensions: {len(a)} and {len(b)} numbers")
    inter = _area([*(max(a[k], b[k]) for k in range(n)), *(min(a[n + k], b[n + k]) for k in range(n))])
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def centre_inside(predicted: Sequence[float], truth: Sequence[float]) -> bool:
    """Whether the centre of ``predicted`` lies in ``truth`` (half-open: max edges excluded)."""
    n = _dims(truth)
    centre = [(predicted[k] + predicted[n + k]) / 2 for k in range(n)]
    return all(truth[k] <= centre[k] < truth[n + k] for k in range(n))


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of predicted to true boxes.

    Attributes:
        pairs: ``(predicted index, true index, IoU)`` for every matched pair.
        hits: Pairs with IoU at or above the threshold (true positives).
        n_predicted: Number of predicted boxes.
        n_truth: Number of true boxes.
    """

    pairs: tuple[tuple[int, int, float], ...]
    hits: int
    n_predicted: int
    n_truth: int


def match_boxes(
    predicted: Sequence[Sequence[float]], truth: Sequence[Sequence[float]], *, threshold: float = MATCH_THRESHOLD
) -> Matching:
    """Hungarian one-to-one matching of predicted to true boxes.

    The matching maximises the number of pairs with IoU >= ``threshold`` and, among those
    matchings, the summed IoU, so a pair of near misses never costs a hit.

    Args:
        predicted: Predicted boxes (stored-image pixels).
        truth: True boxes (stored-image pixels).
        threshold: IoU at which a matched pair counts as a hit.

    Returns:
        The matching.
    """
    overlaps = [[iou(p, t) for t in truth] for p in predicted]
    pairs = _match(overlaps, threshold)
    hits = sum(1 for _, _, value in pairs if value >= threshold)
    return Matching(tuple(pairs), hits, len(predicted), len(truth))


def _match(overlaps: list[list[float]], threshold: float) -> list[tuple[int, int, float]]:
    if not overlaps or not overlaps[0]:
        return []
    n, m = len(overlaps), len(overlaps[0])
    # A hit outweighs any sum of IoUs (at most min(n, m)), so hits are maximised first.
    bonus = min(n, m) + 1.0
    weights = [[(bonus if v >= threshold else 0.0) + v for v in row] for row in overlaps]
    return [(i, j, overlaps[i][j]) for i, j in _max_weight_assignment(weights)]


def _max_weight_assignment(weights: list[list[float]]) -> list[tuple[int, int]]:
    """A maximum-weight assignment of min(rows, cols) pairs: scipy's when it is installed,
    else the O(n^2 m) Hungarian algorithm below (the sizes here are a handful of boxes)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return _hungarian(weights)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return sorted((int(i), int(j)) for i, j in zip(rows, cols, strict=True))


def _hungarian(weights: list[list[float]]) -> list[tuple[int, int]]:
    """Exact maximum-weight assignment (Kuhn-Munkres with potentials, shortest augmenting
    paths); rectangular matrices are transposed so that rows <= columns."""
    transposed = len(weights) > len(weights[0])
    cost = [list(col) for col in zip(*weights, strict=True)] if transposed else [list(row) for row in weights]
    n, m = len(cost), len(cost[0])
    cost = [[-v for v in row] for row in cost]  # minimise the negated weights
    u, v = [0.0] * (n + 1), [0.0] * (m + 1)
    owner = [0] * (m + 1)  # owner[j]: 1-based row assigned to column j (0: none)
    way = [0] * (m + 1)
    for i in range(1, n + 1):
        _assign_row(cost, i, u, v, owner, way)
    pairs = [(owner[j] - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((j, i) for i, j in pairs) if transposed else sorted(pairs)


def _assign_row(
    cost: list[list[float]], i: int, u: list[float], v: list[float], owner: list[int], way: list[int]
) -> None:
    """Adds 1-based row ``i`` to the assignment: grows a shortest augmenting path from it,
    updating the potentials ``u``, ``v``, until a free column is reached, then flips the
    assignment along the path (``way[j]``: the column before ``j`` on it)."""
    m = len(cost[0])
    owner[0] = i
    j0 = 0
    min_slack = [math.inf] * (m + 1)
    used = [False] * (m + 1)
    while True:
        used[j0] = True
        delta, j1 = _tightest_column(cost, owner[j0], j0, u, v, used, min_slack, way)
        for j in range(m + 1):
            if used[j]:
                u[owner[j]] += delta
                v[j] -= delta
            else:
                min_slack[j] -= delta
        j0 = j1
        if owner[j0] == 0:
            break
    while j0:
        j1 = way[j0]
        owner[j0] = owner[j1]
        j0 = j1


def _tightest_column(
    cost: list[list[float]],
    i0: int,
    j0: int,
    u: list[float],
    v: list[float],
    used: list[bool],
    min_slack: list[float],
    way: list[int],
) -> tuple[float, int]:
    """Relaxes the unused columns' slacks through row ``i0`` (reached via column ``j0``);
    returns the smallest slack and its column."""
    delta, j1 = math.inf, 0
    for j in range(1, len(min_slack)):
        if used[j]:
            continue
        slack = cost[i0 - 1][j - 1] - u[i0] - v[j]
        if slack < min_slack[j]:
            min_slack[j], way[j] = slack, j0
        if min_slack[j] < delta:
            delta, j1 = min_slack[j], j
    return delta, j1
