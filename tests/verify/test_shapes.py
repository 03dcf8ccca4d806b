"""The verifier's shape of a lesion, measured by the core, against a reference in
numpy and scipy written from the definitions: elongation from the covariance of the
pixel centres, solidity against the Qhull hull of every pixel square's corners,
circularity from the marching-squares contour at level 0.5, the diameter between hull
vertices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import spatial

from medground.verify.measure import SHAPE_BAND, _shapes
from medground.words import shape_word


def _reference(mask: np.ndarray, scale: tuple[float, float]) -> tuple[float, float, float, float]:
    row_mm, col_mm = scale
    ys, xs = np.nonzero(mask)
    coords = np.stack([xs * col_mm, ys * row_mm], axis=1)
    elongation = 1.0
    if len(coords) > 1:
        eigen = np.linalg.eigvalsh(np.cov(coords, rowvar=False, bias=True))
        elongation = math.sqrt(max(eigen[0], 0.0) / eigen[1]) if eigen[1] > 0 else 1.0
    corners = np.unique(
        np.concatenate([np.stack([(xs + dx) * col_mm, (ys + dy) * row_mm], axis=1) for dx in (0, 1) for dy in (0, 1)]),
        axis=0,
    )
    hull = corners[spatial.ConvexHull(corners).vertices]
    area = float(mask.sum()) * row_mm * col_mm
    x, y = hull[:, 0], hull[:, 1]
    hull_area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    solidity = min(1.0, area / hull_area)
    # Marching squares at 0.5: each 2×2 cell's segments by its configuration.
    padded = np.pad(mask, 1).astype(np.uint8)
    code = padded[:-1, :-1] | (padded[:-1, 1:] << 1) | (padded[1:, 1:] << 2) | (padded[1:, :-1] << 3)
    lengths = np.zeros(16)
    lengths[[1, 2, 4, 8, 14, 13, 11, 7]] = 0.5 * math.hypot(row_mm, col_mm)
    lengths[[3, 12]] = col_mm
    lengths[[6, 9]] = row_mm
    lengths[[5, 10]] = 2 * 0.5 * math.hypot(row_mm, col_mm)  # saddles: two corners cut off
    perimeter = float(lengths[code].sum())
    circularity = 4 * math.pi * area / perimeter**2
    diameter = float(np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1)).max())
    return elongation, solidity, circularity, diameter


def _classes(elongation: float, solidity: float, circularity: float) -> frozenset[str]:
    return frozenset(
        shape_word(
            elongation + de * SHAPE_BAND["elongation"],
            solidity + ds * SHAPE_BAND["solidity"],
            circularity + dc * SHAPE_BAND["circularity"],
        )
        for de in (-1, 0, 1)
        for ds in (-1, 0, 1)
        for dc in (-1, 0, 1)
    )


def _disc(radius: float, stretch: float = 1.0) -> np.ndarray:
    y, x = np.mgrid[-40:41, -40:41]
    return (x / stretch) ** 2 + y**2 <= radius**2


@pytest.mark.parametrize(
    ("mask", "scale"),
    [
        (_disc(12), (0.7, 0.7)),
        (_disc(6, 3.0), (0.8, 0.5)),
        (np.ones((1, 1), bool), (1.0, 1.0)),  # one pixel: no spread, elongation 1
        (np.ones((1, 9), bool), (1.0, 1.0)),  # a line: elongation 0
        (np.eye(7, dtype=bool), (0.5, 1.5)),  # a diagonal, pixels touching at corners
        (np.pad(np.ones((5, 5), bool), 2) & ~np.pad(np.ones((3, 3), bool), 3), (1.0, 1.0)),  # a ring, a hole
    ],
)
def test_shapes_of_known_masks(mask: np.ndarray, scale: tuple[float, float]) -> None:
    elongation, solidity, circularity, diameter = _reference(mask, scale)
    classes, measured = _shapes(mask, scale)
    assert classes == _classes(elongation, solidity, circularity)
    assert measured == pytest.approx(diameter, rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))).filter(lambda m: bool(m.any())),
    st.floats(0.2, 3.0),
    st.floats(0.2, 3.0),
)
def test_shapes_equal_the_reference(mask: np.ndarray, row_mm: float, col_mm: float) -> None:
    """Any mask, any pixel size: the measures agree with the reference to rounding (1e-9),
    and the classes are the reference's except where a measure lies within that rounding
    of a class bound."""
    elongation, solidity, circularity, diameter = _reference(mask, (row_mm, col_mm))
    classes, measured = _shapes(mask, (row_mm, col_mm))
    assert measured == pytest.approx(diameter, rel=1e-9)
    nudged = {
        _classes(elongation + a, solidity + b, circularity + c)
        for a in (-1e-9, 0, 1e-9)
        for b in (-1e-9, 0, 1e-9)
        for c in (-1e-9, 0, 1e-9)
    }
    assert classes in nudged
