"""slice_areas, slice_bboxes, contacts, overlap, dust and largest_k against brute force and cc3d."""

from __future__ import annotations

import itertools

import cc3d
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from medground import phantoms
from medground.geometry import (
    connected_components,
    contacts,
    dust,
    largest_k,
    overlap,
    regionprops,
    slice_areas,
    slice_bboxes,
)
from partitions import same_partition


def volume() -> np.ndarray:
    return phantoms.ellipsoids((20, 36, 40), 18, labels=5, radius=(2.0, 9.0), seed=7)


def brute_contacts(labels: np.ndarray, connectivity: int) -> dict[tuple[int, int], int]:
    """Counts neighbouring voxel pairs by looping over half of the neighbour offsets."""
    ndim = labels.ndim
    max_nonzero = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}[connectivity]
    offsets = [
        o
        for o in itertools.product((-1, 0, 1), repeat=ndim)
        if 0 < np.count_nonzero(o) <= max_nonzero and o > (0,) * ndim
    ]
    counts: dict[tuple[int, int], int] = {}
    padded = np.pad(labels.astype(np.int64), 1)
    core = tuple(slice(1, -1) for _ in range(ndim))
    for off in offsets:
        shifted = padded[tuple(slice(1 + o, padded.shape[a] - 1 + o) for a, o in enumerate(off))]
        a, b = padded[core], shifted
        sel = (a != 0) & (b != 0) & (a != b)
        for x, y in zip(a[sel], b[sel], strict=True):
            key = (min(x, y), max(x, y))
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_slice_areas(order, axis):
    vol = np.asarray(volume(), order=order)
    table = slice_areas(vol, axis)
    labels = regionprops(vol).label
    expected = np.stack([(vol == label).sum(axis=tuple(a for a in range(3) if a != axis % 3)) for label in labels])
    assert table.dtype == np.int64
    np.testing.assert_array_equal(table, expected)


def test_slice_areas_2d():
    img = volume()[5]
    np.testing.assert_array_equal(slice_areas(img, 1), np.stack([(img == v).sum(0) for v in np.unique(img)[1:]]))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_bboxes(axis):
    vol = volume()
    index = vol.shape[axis] // 2
    table = slice_bboxes(vol, axis, index)
    plane = np.take(vol, index, axis=axis)
    assert list(table.label) == sorted(set(np.unique(plane)) - {0})
    for i, label in enumerate(table.label):
        rr, cc = np.nonzero(plane == label)
        assert list(table.bbox_min[i]) == [rr.min(), cc.min()]
        assert list(table.bbox_max[i]) == [rr.max() + 1, cc.max() + 1]


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_contacts_3d(connectivity):
    vol = volume()
    assert contacts(vol, connectivity).to_dict() == brute_contacts(vol, connectivity)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_contacts_2d(connectivity):
    img = volume()[9]
    assert contacts(img, connectivity).to_dict() == brute_contacts(img, connectivity)


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 8)), elements=st.integers(0, 3)),
    st.sampled_from([6, 18, 26]),
)
def test_contacts_random(vol, connectivity):
    assert contacts(vol, connectivity).to_dict() == brute_contacts(vol, connectivity)


def test_contacts_across_slabs_of_a_large_volume():
    vol = phantoms.ellipsoids((64, 128, 130), 50, labels=6, radius=(3.0, 14.0), seed=4)
    assert contacts(vol, 26).to_dict() == brute_contacts(vol, 26)


@pytest.mark.parametrize("order_b", ["C", "F"])
def test_overlap(order_b):
    a = volume()
    b = np.asarray(
        phantoms.ellipsoids(a.shape, 10, labels=3, radius=(3.0, 12.0), seed=9).astype(np.int32), order=order_b
    )
    table = overlap(a, b)
    fg = (a != 0) & (b != 0)
    pairs, counts = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1, return_counts=True)
    assert table.to_dict() == {(int(x), int(y)): int(c) for (x, y), c in zip(pairs.T, counts, strict=True)}


def test_overlap_large_volume_across_slabs():
    a = phantoms.ellipsoids((64, 128, 130), 40, labels=4, radius=(3.0, 14.0), seed=1)
    b = connected_components(a, 6)
    table = overlap(a, b)
    assert table.count.sum() == np.count_nonzero(a)
    # Every component lies inside exactly one label.
    assert len(np.unique(table.b)) == len(table)


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("threshold", [1, 20, 200])
def test_dust_matches_cc3d(connectivity, threshold):
    vol = volume() | phantoms.salt((20, 36, 40), 0.01, seed=1).astype(np.uint8)
    ours = dust(vol, threshold, connectivity)
    ref = cc3d.dust(vol, threshold, connectivity=connectivity)
    assert ours.dtype == vol.dtype
    np.testing.assert_array_equal(ours, ref)
    kept_big = dust(vol, threshold, connectivity, invert=True)
    np.testing.assert_array_equal(np.where(ours != 0, ours, kept_big), vol)


@pytest.mark.parametrize(
    "view",
    [lambda v: v, np.asfortranarray, lambda v: v[:, ::-1, 1:], lambda v: v[5], lambda v: np.asfortranarray(v[5])],
    ids=["C", "F", "strided", "2D", "2D-F"],
)
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int64])
def test_dust_in_place_matches_the_copy(view, dtype):
    vol = (volume() | phantoms.salt((20, 36, 40), 0.01, seed=1).astype(np.uint8)).astype(dtype)
    target = view(vol.copy())
    expected = dust(target.copy(), 20)
    result = dust(target, 20, in_place=True)
    assert result is target
    np.testing.assert_array_equal(target, expected)
    assert np.count_nonzero(target) < np.count_nonzero(view(vol))


def test_dust_in_place_refuses_what_it_cannot_edit():
    ro = volume()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        dust(ro, 5, in_place=True)
    with pytest.raises(ValueError, match="numpy array"):
        dust([[1, 0], [0, 1]], 5, in_place=True)
    with pytest.raises(ValueError, match="native byte order"):
        dust(volume().astype(">u2"), 5, in_place=True)


def test_largest_k():
    vol = volume()
    ours, n = largest_k(vol, 4, 26, return_n=True)
    ref = cc3d.largest_k(vol, 4, connectivity=26)
    assert n == 4
    assert same_partition(ours, ref)
    sizes = np.bincount(ours.ravel())[1:]
    assert list(sizes) == sorted(sizes, reverse=True)
    assert largest_k(vol, 0).max() == 0
    all_components = connected_components(vol)
    assert same_partition(largest_k(vol, 10_000), all_components)


def test_uint64_labels_beyond_int64():
    labels = np.array([[2**63, 1, 0], [2**64 - 1, 2**64 - 1, 0]], np.uint64)
    table = contacts(labels, 4)
    assert table.a.dtype == np.uint64
    assert table.to_dict() == {(1, 2**63): 1, (1, 2**64 - 1): 1, (2**63, 2**64 - 1): 1}
    assert overlap(labels, labels).to_dict() == {(1, 1): 1, (2**63, 2**63): 1, (2**64 - 1, 2**64 - 1): 2}
    assert contacts(labels.astype(np.int64) // 4, 4).a.dtype == np.int64


@pytest.mark.parametrize("threads", [1, 2])
def test_relations_identical_for_any_thread_count(threads):
    import medground

    vol = phantoms.ellipsoids((64, 128, 130), 50, labels=6, radius=(3.0, 14.0), seed=4)
    components = connected_components(vol, 6)
    medground.set_num_threads(0)
    reference = (contacts(vol, 26).to_dict(), overlap(vol, components).to_dict(), slice_areas(vol, 2))
    medground.set_num_threads(threads)
    try:
        assert contacts(vol, 26).to_dict() == reference[0]
        assert overlap(vol, components).to_dict() == reference[1]
        np.testing.assert_array_equal(slice_areas(vol, 2), reference[2])
    finally:
        medground.set_num_threads(0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_contacts_and_slice_bboxes_in_fortran_order(order):
    vol = np.asarray(volume(), order=order)
    assert contacts(vol, 6).to_dict() == brute_contacts(np.ascontiguousarray(vol), 6)
    table = slice_bboxes(vol, 1, 18)
    plane = vol[:, 18, :]
    for i, label in enumerate(table.label):
        rr, cc = np.nonzero(plane == label)
        assert list(table.bbox_min[i]) + list(table.bbox_max[i]) == [rr.min(), cc.min(), rr.max() + 1, cc.max() + 1]


@pytest.mark.parametrize("order", ["C", "F"])
def test_dust_in_place_on_images_and_volumes_cut_into_slabs(order):
    import medground

    image = np.asarray(phantoms.salt((700, 650), 0.2, seed=3).astype(np.uint8), order=order)
    vol = np.asarray(phantoms.salt((40, 120, 110), 0.15, seed=4).astype(np.uint8), order=order)
    medground.set_num_threads(2)
    try:
        for mask in (image, vol):
            expected = cc3d.dust(np.ascontiguousarray(mask), 4, connectivity=8 if mask.ndim == 2 else 26)
            dust(mask, 4, in_place=True)
            np.testing.assert_array_equal(mask, expected)
    finally:
        medground.set_num_threads(0)
