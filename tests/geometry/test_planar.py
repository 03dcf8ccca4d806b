"""The core's per-object passes over a 2D view, against pycocotools, numpy and scipy.

``rle_by_label`` must give, for every label, the counts string pycocotools writes for that
label's mask; ``object_stats`` the same numbers the numpy/scipy readings of one object give
(ring by dilation or by Euclidean distance, contrast across the outline, outline on the
border, touching owners, 8-connected pieces) — the views and the verifier rely on both
being exact, so that records stay byte-identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from medground import geometry
from medground.verify.measure import _otsu

coco_mask = pytest.importorskip("pycocotools.mask")


@st.composite
def views(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A small label map of blobs (smoothed noise) or speckle, C- or Fortran-ordered, and
    8-bit grey levels of its shape."""
    height = draw(st.integers(1, 40))
    width = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, (height, width)).astype(draw(st.sampled_from([np.uint8, np.int32, np.uint16])))
    if draw(st.booleans()):
        labels = ndimage.median_filter(labels, 3)
    if draw(st.booleans()):
        labels = np.asfortranarray(labels)
    grey = rng.integers(0, 256, (height, width)).astype(np.uint8)
    return labels, grey


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, ndimage.generate_binary_structure(2, 1), iterations=radius)


@settings(max_examples=150, deadline=None)
@given(views())
def test_every_label_encodes_as_pycocotools_does(view: tuple[np.ndarray, np.ndarray]) -> None:
    labels, _ = view
    found = geometry.rle_by_label(labels)
    ids = [int(i) for i in np.unique(labels) if i]
    assert list(found) == ids
    for i in ids:
        expected = coco_mask.encode(np.asfortranarray((labels == i).astype(np.uint8)))["counts"].decode()
        assert found[i] == expected


@settings(max_examples=150, deadline=None)
# Radii of a few pixels (the rings the views and the verifier read from the object's runs)
# and past the core's RUN_RADIUS (32: from a distance map).
@given(views(), st.integers(1, 6) | st.sampled_from([32, 33, 45]))
def test_object_stats_equal_the_pixel_readings(view: tuple[np.ndarray, np.ndarray], radius: int) -> None:
    labels, grey = view
    height, width = labels.shape
    values = grey.astype(np.float64)
    ids = [int(i) for i in np.unique(labels) if i]
    diamond = geometry.object_stats(labels, grey, [*ids, 99], radius, "diamond")
    disk = geometry.object_stats(labels, grey, ids, radius, "disk", within=[(0, 0, width, height)] * len(ids))
    assert diamond[-1] is None  # an id not in the map
    for i, a, b in zip(ids, diamond, disk, strict=False):
        assert a is not None and b is not None
        mask = labels == i
        ys, xs = np.nonzero(mask)
        assert a.bbox == b.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert a.area == b.area == mask.sum()
        assert a.centre == (xs.mean() + 0.5, ys.mean() + 0.5)
        assert a.inside_mean == values[mask].mean()
        assert a.inside_std == pytest.approx(values[mask].std(), abs=1e-9)
        ring = _dilate(mask, radius) & ~mask
        assert a.ring_count == ring.sum()
        if ring.any():
            assert a.ring_mean == values[ring].mean()
            assert a.ring_std == pytest.approx(values[ring].std(), abs=1e-9)
        disk_ring = (ndimage.distance_transform_edt(~mask) <= radius) & ~mask
        assert b.ring_count == disk_ring.sum()
        if disk_ring.any():
            assert b.ring_mean == values[disk_ring].mean()
        # Contrast across the outline: every (inside, outside 4-neighbour) pair in the image.
        differences = []
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            for y, x in zip(ys, xs, strict=True):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and not mask[ny, nx]:
                    differences.append(abs(values[y, x] - values[ny, nx]))
        assert a.edge_count == len(differences)
        assert a.edge_mean == (float(np.mean(differences)) if differences else 0.0)
        # Outline: pixels with a 4-neighbour outside the object or the image.
        padded = np.pad(mask, 1)
        outline = mask & ~ndimage.binary_erosion(padded, ndimage.generate_binary_structure(2, 1))[1:-1, 1:-1]
        border = np.zeros_like(mask)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        assert a.outline == outline.sum()
        assert a.outline_on_border == (outline & border).sum()
        touching = _dilate(mask, 1) & ~mask
        owners, counts = np.unique(labels[touching], return_counts=True)
        assert a.touching == touching.sum()
        assert dict(a.touches) == {int(o): int(c) for o, c in zip(owners, counts, strict=True) if o}
        pieces, n = ndimage.label(mask, structure=np.ones((3, 3)))
        assert list(a.pieces) == sorted(np.bincount(pieces.ravel())[1:].tolist(), reverse=True)
        assert b.pieces == a.pieces


def test_object_stats_of_long_rows_and_large_interiors() -> None:
    """Rows longer than the core's 4,096-pixel blocks of 32-bit sums, and interiors wide
    enough to be passed over eight pixels at a time, give numpy's numbers."""
    rng = np.random.default_rng(7)
    labels = np.zeros((5, 9000), np.int32)
    labels[1:4, 3:8990] = 2  # one object across three blocks of a row
    labels[2, 4000:4100] = 3  # a second one inside it, across a block's end
    grey = rng.integers(0, 256, labels.shape).astype(np.uint8)
    big = np.zeros((120, 140), np.uint16)
    big[10:110, 5:135] = 1
    big[40:60, 20:30] = 4
    big_grey = rng.integers(0, 256, big.shape).astype(np.uint8)
    for lab, values in ((labels, grey), (big, big_grey)):
        ids = [int(i) for i in np.unique(lab) if i]
        for i, found in zip(ids, geometry.object_stats(lab, values, ids, 3, "diamond"), strict=True):
            assert found is not None
            mask = lab == i
            ys, xs = np.nonzero(mask)
            inside = values[mask].astype(np.int64)
            assert found.area == mask.sum()
            assert found.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert found.centre == (xs.mean() + 0.5, ys.mean() + 0.5)
            assert (found.inside_sum, found.inside_sumsq) == (inside.sum(), (inside**2).sum())
            padded = np.pad(mask, 1)
            outline = mask & ~ndimage.binary_erosion(padded, ndimage.generate_binary_structure(2, 1))[1:-1, 1:-1]
            assert found.outline == outline.sum()
            touching = _dilate(mask, 1) & ~mask
            owners, counts = np.unique(lab[touching], return_counts=True)
            assert found.touching == touching.sum()
            assert dict(found.touches) == {int(o): int(c) for o, c in zip(owners, counts, strict=True) if o}
            ring = _dilate(mask, 3) & ~mask
            assert (found.ring_count, found.ring_mean) == (ring.sum(), values[ring].astype(np.float64).mean())


def test_object_stats_are_the_dataclass_its_constructor_makes() -> None:
    """The statistics built from the core's rows are ``ObjectStats`` as its constructor
    makes them: equal, of equal hash, frozen, and the same after a pickle round trip (Ray
    moves them between processes)."""
    import dataclasses
    import pickle

    labels = np.zeros((8, 9), np.uint8)
    labels[1:5, 2:6] = 3
    labels[5, 2] = 4
    grey = np.arange(72, dtype=np.uint8).reshape(8, 9)
    (found,) = geometry.object_stats(labels, grey, [3], 2, "diamond")
    assert found is not None
    made = geometry.ObjectStats(**{f.name: getattr(found, f.name) for f in dataclasses.fields(found)})
    assert found == made and hash(found) == hash(made) and found.touches == ((4, 1),)
    assert pickle.loads(pickle.dumps(found)) == found
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.area = 1  # type: ignore[misc]


def test_pieces_are_counted_only_when_asked() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1, 1] = labels[4, 4] = 3
    grey = np.zeros((6, 6), np.uint8)
    (with_pieces,) = geometry.object_stats(labels, grey, [3], 2, "diamond")
    (without,) = geometry.object_stats(labels, grey, [3], 2, "diamond", pieces=False)
    assert with_pieces is not None and without is not None
    assert with_pieces.pieces == (1, 1) and without.pieces == ()


def test_dilation_is_the_diamond_of_its_radius() -> None:
    mask = np.zeros((9, 11), bool)
    mask[4, 5] = True
    mask[0, 0] = True
    for radius in range(4):
        assert (geometry.dilate(mask, radius) == (_dilate(mask, radius) if radius else mask)).all()


def test_bad_input_is_named() -> None:
    labels = np.zeros((4, 4), np.int32)
    with pytest.raises(ValueError, match="grey must be uint8"):
        geometry.object_stats(labels, np.zeros((4, 4), np.float32), [1], 2, "disk")
    with pytest.raises(ValueError, match="ring must be"):
        geometry.object_stats(labels, np.zeros((4, 4), np.uint8), [1], 2, "square")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be 2D"):
        geometry.rle_by_label(np.zeros((2, 2, 2), np.int32))


@settings(max_examples=50, deadline=None)
@given(views())
def test_object_stats_do_not_depend_on_threads(view: tuple[np.ndarray, np.ndarray]) -> None:
    labels, grey = view
    ids = [int(i) for i in np.unique(labels) if i] + [99]
    try:
        geometry.set_num_threads(1)
        alone = geometry.object_stats(labels, grey, ids, 2, "diamond", pieces=True)
        geometry.set_num_threads(2)
        shared = geometry.object_stats(labels, grey, ids, 2, "diamond", pieces=True)
    finally:
        geometry.set_num_threads(0)
    assert alone == shared and shared[-1] is None


def _body_lines_reference(grey: np.ndarray, fraction: float, min_size: int, along_rows: bool):
    """The body by numpy and scipy: Otsu over one bin per grey level, the pixels above
    ``fraction`` of it, scipy's 8-connected components of ``min_size`` or more, and each
    line's first and last pixel (-1 for none)."""
    otsu = _otsu(grey)
    above = grey > fraction * otsu
    components, _ = ndimage.label(above, structure=np.ones((3, 3)))
    sizes = np.bincount(components.ravel())
    body = (sizes >= min_size)[components] & above
    lines = body if along_rows else body.T
    present = lines.any(axis=1)
    first = np.where(present, np.argmax(lines, axis=1), -1)
    last = np.where(present, lines.shape[1] - 1 - np.argmax(lines[:, ::-1], axis=1), -1)
    return otsu, first, last


@st.composite
def grey_views(draw: st.DrawFn) -> np.ndarray:
    """8-bit views: smoothed noise (bodies with holes and specks), few grey levels (ties in
    Otsu's criterion), or one level; C- or Fortran-ordered, or a strided window."""
    height, width = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["smooth", "levels", "flat"]))
    if kind == "smooth":
        grey = ndimage.uniform_filter(rng.integers(0, 256, (height, width)).astype(np.float64), 5).astype(np.uint8)
    elif kind == "levels":
        grey = rng.choice(
            np.asarray(draw(st.lists(st.integers(0, 255), min_size=1, max_size=3)), np.uint8), (height, width)
        )
    else:
        grey = np.full((height, width), draw(st.integers(0, 255)), np.uint8)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        grey = np.asfortranarray(grey)
    elif layout == "strided":
        grey = np.repeat(np.repeat(grey, 2, axis=0), 2, axis=1)[::2, ::2]
    return grey


@given(grey_views(), st.sampled_from([0.5, 1.0]), st.integers(0, 40), st.booleans())
def test_body_lines_equal_the_numpy_and_scipy_reading(
    grey: np.ndarray, fraction: float, min_size: int, rows: bool
) -> None:
    """The verifier's body outline per line, in one core pass: the same Otsu threshold to
    the bit, the same components kept, the same first and last pixel of every line."""
    otsu, first, last = geometry.body_lines(grey, fraction, min_size, along_rows=rows)
    expected = _body_lines_reference(grey, fraction, min_size, rows)
    assert otsu == expected[0]
    np.testing.assert_array_equal(first, expected[1])
    np.testing.assert_array_equal(last, expected[2])


def test_body_lines_on_real_slices(shared_data) -> None:
    """Every axial and coronal slice of the shared CT and MR at their display window: the
    core's body lines are the numpy/scipy ones (0.5% of the slice as the smallest body)."""
    import nibabel as nib

    for folder, name in (("ct_abdomen_totalseg", "ct.nii.gz"), ("mr_abdomen_totalseg", "mr.nii.gz")):
        volume = np.asanyarray(nib.load(shared_data / folder / name).dataobj).astype(np.float64)
        low, high = np.percentile(volume, [1, 99])
        grey = np.clip((volume - low) / (high - low) * 255, 0, 255).astype(np.uint8)
        for axis in (1, 2):
            for index in range(grey.shape[axis]):
                view = np.take(grey, index, axis=axis)
                smallest = int(np.ceil(0.005 * view.size))
                for rows in (True, False):
                    otsu, first, last = geometry.body_lines(view, 0.5, smallest, along_rows=rows)
                    expected = _body_lines_reference(view, 0.5, smallest, rows)
                    assert otsu == expected[0]
                    np.testing.assert_array_equal(first, expected[1])
                    np.testing.assert_array_equal(last, expected[2])


def test_body_lines_name_bad_input() -> None:
    with pytest.raises(ValueError, match="2D uint8"):
        geometry.body_lines(np.zeros((4, 4), np.float32), 0.5, 1)
    with pytest.raises(ValueError, match="2D uint8"):
        geometry.body_lines(np.zeros((2, 4, 4), np.uint8), 0.5, 1)
    with pytest.raises(ValueError, match="min_size"):
        geometry.body_lines(np.zeros((4, 4), np.uint8), 0.5, -1)


@settings(max_examples=150, deadline=None)
@given(
    mask=arrays(np.bool_, st.tuples(st.integers(0, 9), st.integers(0, 9))),
    widths=st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)),
    uniform=st.booleans(),
)
def test_padding_a_mask_is_numpys_padding_with_false(mask, widths, uniform) -> None:
    top, bottom, left, right = widths
    width = top if uniform else ((top, bottom), (left, right))
    expected = np.pad(mask, width, constant_values=False)
    out = geometry.padded(mask, width)
    assert out.dtype == np.bool_ and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_padding_names_bad_widths_and_shapes() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        geometry.padded(np.ones((2, 2), bool), ((0, -1), (0, 0)))
    with pytest.raises(ValueError, match="2D"):
        geometry.padded(np.ones((2, 2, 2), bool), 1)
