"""The verifier's hull of a mask: the convex hull of every pixel square's corners."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import spatial

from medground.verify.measure import _hull_corners


@settings(max_examples=300, deadline=None)
@given(
    arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))),
    st.floats(0.2, 3.0),
    st.floats(0.2, 3.0),
)
def test_hull_equals_qhull_of_every_pixel_corner(mask: np.ndarray, row_mm: float, col_mm: float) -> None:
    """Reading only each row's first and last pixel gives the hull Qhull finds over the
    corners of every pixel: the same vertices, in the same order."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        assert len(_hull_corners(mask, (row_mm, col_mm))) == 0
        return
    corners = np.unique(
        np.concatenate([np.stack([(xs + dx) * col_mm, (ys + dy) * row_mm], axis=1) for dx in (0, 1) for dy in (0, 1)]),
        axis=0,
    )
    expected = corners[spatial.ConvexHull(corners).vertices]
    np.testing.assert_array_equal(_hull_corners(mask, (row_mm, col_mm)), expected)
