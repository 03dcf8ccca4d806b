"""Whole-volume passes of the core, against numpy: renumbering a label map through a table
(components to objects) and sampling each object's voxels in C order from a volume in
either memory order. Both stand in for numpy expressions the pipeline used, so they must
give exactly what those gave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medground import geometry


@st.composite
def volumes(draw: st.DrawFn) -> np.ndarray:
    shape = tuple(draw(st.integers(1, 12)) for _ in range(draw(st.sampled_from([2, 3]))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, 4, shape).astype(draw(st.sampled_from([np.uint8, np.uint16, np.int32])))
    return np.asfortranarray(labels) if draw(st.booleans()) else labels


@settings(max_examples=100, deadline=None)
@given(volumes(), st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64]))
def test_relabel_is_numpy_indexing(labels: np.ndarray, dtype: type) -> None:
    lookup = np.arange(4, dtype=dtype)[::-1].copy()
    got = geometry.relabel(labels, lookup)
    expected = lookup[labels]
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert got.flags.f_contiguous == labels.flags.f_contiguous or got.ndim < 2


def test_relabel_names_a_value_past_the_table() -> None:
    with pytest.raises(ValueError, match="value 5 has no entry in a table of 3"):
        geometry.relabel(np.array([[0, 5]], np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(TypeError, match="lookup must be"):
        geometry.relabel(np.zeros((2, 2), np.uint8), np.zeros(3, np.float32))


@settings(max_examples=100, deadline=None)
@given(volumes(), st.integers(1, 40))
def test_samples_are_numpys_c_order_picks(labels: np.ndarray, sample: int) -> None:
    ids = [int(i) for i in np.unique(labels) if i]
    boxes = []
    for i in ids:
        where = np.argwhere(labels == i)
        boxes.append((*where.min(axis=0), *(where.max(axis=0) + 1)))
    got = geometry.c_order_samples(labels, ids[::-1], boxes[::-1], sample)[::-1]
    for i, box, picks in zip(ids, boxes, got, strict=True):
        ndim = labels.ndim
        crop = tuple(slice(lo, hi) for lo, hi in zip(box[:ndim], box[ndim:], strict=True))
        flat = np.flatnonzero(labels[crop] == i)
        stride = max(1, flat.size // sample)
        local = np.stack(np.unravel_index(flat[::stride], labels[crop].shape), axis=1)
        np.testing.assert_array_equal(picks, local + np.asarray(box[:ndim]))


def test_samples_stay_within_the_given_box() -> None:
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = labels[3, 3, 3] = 1
    (picks,) = geometry.c_order_samples(labels, [1], [(0, 0, 0, 2, 2, 2)], 10)
    np.testing.assert_array_equal(picks, [[0, 0, 0]])


@settings(max_examples=100, deadline=None)
@given(volumes())
def test_areas_along_every_axis_are_the_one_axis_tables(labels: np.ndarray) -> None:
    ids, tables = geometry.slice_areas_along(labels)
    assert len(tables) == labels.ndim
    for axis, table in enumerate(tables):
        one_ids, one = geometry.slice_areas(labels, axis, return_labels=True)
        np.testing.assert_array_equal(ids, one_ids)
        np.testing.assert_array_equal(table, one)
        # and what numpy counts: each label's voxels on each slice
        for row, label in enumerate(ids):
            other = tuple(a for a in range(labels.ndim) if a != axis)
            np.testing.assert_array_equal(table[row], (labels == label).sum(axis=other))
    chosen_ids, chosen = geometry.slice_areas_along(labels, axes=(-1, 0))
    np.testing.assert_array_equal(chosen_ids, ids)
    np.testing.assert_array_equal(chosen[0], tables[-1])
    np.testing.assert_array_equal(chosen[1], tables[0])
    alone, none = geometry.slice_areas_along(labels, axes=())
    np.testing.assert_array_equal(alone, ids)
    assert none == ()


def test_areas_along_name_a_bad_axis() -> None:
    with pytest.raises(ValueError, match="axis must be an integer in \\[-3, 3\\) for a 3D array, got 3"):
        geometry.slice_areas_along(np.zeros((2, 2, 2), np.uint8), axes=(0, 3))


def _numpy_side_share(picks: np.ndarray, affine: np.ndarray, levels: np.ndarray, mid: np.ndarray) -> float:
    """What the cues computed before the core did: world x and z axis by axis, against
    ``np.interp``."""

    def world(row: int) -> np.ndarray:
        index = [picks[:, axis].astype(np.float64) for axis in range(picks.shape[1])]
        out = index[0] * affine[row, 0]
        for axis in range(1, len(index)):
            out = out + index[axis] * affine[row, axis]
        return out + affine[row, 3]

    return float(np.mean(world(0) > np.interp(world(2), levels, mid)))


@settings(max_examples=150, deadline=None)
@given(volumes(), st.integers(1, 40), st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_side_shares_are_numpys_over_the_same_picks(labels: np.ndarray, sample: int, seed: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    affine[:3, :3] = rng.normal(0, 1.5, (3, 3))
    affine[:3, 3] = rng.normal(0, 10, 3)
    ndim = labels.ndim
    # Levels on the grid's own z values too, where np.interp answers exactly.
    corners = np.asarray(np.meshgrid(*[[0, s - 1] for s in labels.shape], indexing="ij")).reshape(ndim, -1).T
    zs = corners @ affine[2, :ndim] + affine[2, 3]
    levels = np.unique(np.concatenate([rng.uniform(zs.min() - 2, zs.max() + 2, count), zs[: count // 2]]))
    mid = rng.normal(affine[0, 3], 3, levels.size)
    ids = [int(i) for i in np.unique(labels) if i]
    boxes = []
    for i in ids:
        where = np.argwhere(labels == i)
        boxes.append((*where.min(axis=0), *(where.max(axis=0) + 1)))
    got = geometry.c_order_side_shares(labels, ids, boxes, sample, affine, levels, mid)
    picks = geometry.c_order_samples(labels, ids, boxes, sample)
    expected = [_numpy_side_share(p, affine, levels, mid) for p in picks]
    assert got.tolist() == expected


@settings(max_examples=150, deadline=None)
@given(volumes(), st.integers(0, 2**32 - 1), st.integers(1, 6), st.booleans(), st.integers(1, 9))
def test_exact_side_shares_are_numpys_over_every_voxel(
    labels: np.ndarray, seed: int, count: int, level: bool, stretch: int
) -> None:
    """``side_shares`` counts every voxel: numpy's share over ``np.argwhere(labels == id)``,
    to the bit, in either memory order, on runs long enough to cross the midline (counted
    by bisection where the lanes keep one world z, voxel by voxel where they tilt)."""
    fortran = labels.flags.f_contiguous and not labels.flags.c_contiguous
    for axis in range(labels.ndim):
        labels = np.repeat(labels, stretch, axis=axis)
    labels = np.asfortranarray(labels) if fortran else np.ascontiguousarray(labels)
    rng = np.random.default_rng(seed)
    ndim = labels.ndim
    affine = np.eye(4)
    affine[:3, :3] = rng.normal(0, 1.5, (3, 3))
    affine[:3, 3] = rng.normal(0, 10, 3)
    if level:  # z along the middle axis alone: every lane of either order at one z
        affine[2, [0, ndim - 1]] = 0.0
    corners = np.asarray(np.meshgrid(*[[0, s - 1] for s in labels.shape], indexing="ij")).reshape(ndim, -1).T
    zs = corners @ affine[2, :ndim] + affine[2, 3]
    levels = np.unique(np.concatenate([rng.uniform(zs.min() - 2, zs.max() + 2, count), zs[: count // 2]]))
    mid = rng.normal(affine[0, 3], 3, levels.size)
    ids = [int(i) for i in np.unique(labels) if i] + [9]
    got = geometry.side_shares(labels, ids, affine, levels, mid)
    expected = [_numpy_side_share(np.argwhere(labels == i), affine, levels, mid) for i in ids[:-1]]
    assert got[:-1].tolist() == expected
    assert np.isnan(got[-1])


def test_side_shares_name_a_bad_midline() -> None:
    labels = np.ones((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="the midline needs levels"):
        geometry.c_order_side_shares(labels, [1], [(0, 0, 0, 2, 2, 2)], 5, np.eye(4), [], [])
    with pytest.raises(ValueError, match="affine must be 4x4"):
        geometry.c_order_side_shares(labels, [1], [(0, 0, 0, 2, 2, 2)], 5, np.eye(3), [0.0], [0.0])
    with pytest.raises(ValueError, match="the midline needs levels"):
        geometry.side_shares(labels, [1], np.eye(4), [0.0, 1.0], [0.0])
    with pytest.raises(ValueError, match="affine must be 4x4"):
        geometry.side_shares(labels, [1], np.eye(3), [0.0], [0.0])
