"""medground.io.volume: axis codes of affines (against nibabel), the radiograph affine and
the patient side of a world point."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medground.io.volume import axcodes_of, patient_side, radiograph_affine
from orientations import ORIENTATIONS, RNG_SEED
from orientations import oriented_affine as _affine


def test_axcodes_of_matches_nibabel_on_random_affines():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(200):
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        linear = (q * np.sign(np.diag(r)))[:, rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)
        affine = _affine(linear, spacing=rng.uniform(0.2, 6.0, 3), origin=rng.normal(0.0, 100.0, 3))
        assert axcodes_of(affine) == nib.aff2axcodes(affine)


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_axcodes_of_known_orientations(orientation):
    affine = _affine(ORIENTATIONS[orientation])
    assert axcodes_of(affine) == nib.aff2axcodes(affine)
    assert (
        axcodes_of(affine)
        == {"RAS": ("R", "A", "S"), "LPS": ("L", "P", "S"), "oblique_permuted": ("A", "I", "R")}[orientation]
    )


def test_radiograph_affine():
    affine = radiograph_affine((0.5, 0.25))
    assert axcodes_of(affine, 2) == ("I", "L")
    assert axcodes_of(affine) == ("I", "L", "A")
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :2], axis=0), [0.5, 0.25])


@pytest.mark.parametrize(
    ("point", "kwargs", "side"),
    [
        ((10.0, 0.0, 0.0), {}, "right"),
        ((-10.0, 5.0, 5.0), {}, "left"),
        ((0.0, 1.0, 1.0), {}, "midline"),
        ((1.5, 0.0, 0.0), {"tolerance_mm": 2.0}, "midline"),
        ((-1.5, 0.0, 0.0), {"tolerance_mm": 2.0}, "midline"),
        ((2.5, 0.0, 0.0), {"tolerance_mm": 2.0}, "right"),
        ((5.0, 0.0, 0.0), {"midline_x": 8.0}, "left"),
    ],
)
def test_patient_side(point, kwargs, side):
    assert patient_side(point, **kwargs) == side


def _all_orientations():
    """The 48 storage orientations of a 3D grid: every axis order, every sign."""
    import itertools

    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            linear = np.zeros((3, 3))
            for axis, world in enumerate(order):
                linear[world, axis] = signs[axis]
            yield linear


def test_to_ras_is_nibabels_closest_canonical_in_all_48_orientations():
    """The canonical array (a view, never a copy) and its affine are nibabel's, in every
    orientation a file can store a grid in, obliquity included."""
    from medground.io.volume import to_ras

    rng = np.random.default_rng(RNG_SEED)
    for linear in _all_orientations():
        tilt, _ = np.linalg.qr(np.eye(3) + rng.normal(0.0, 0.08, (3, 3)))
        tilt *= np.sign(np.diag(tilt))
        affine = _affine(tilt @ linear, spacing=rng.uniform(0.4, 4.0, 3), origin=rng.normal(0.0, 80.0, 3))
        array = rng.integers(0, 1000, size=(5, 6, 7)).astype(np.int16)
        canonical = nib.as_closest_canonical(nib.Nifti1Image(array, affine))
        reorientation = to_ras(array.shape, affine)
        mine = reorientation.array(array)
        assert np.shares_memory(mine, array)
        assert np.array_equal(mine, np.asarray(canonical.dataobj))
        assert np.allclose(reorientation.affine(affine), canonical.affine)
        assert axcodes_of(reorientation.affine(affine)) == ("R", "A", "S")


def test_a_box_moves_to_the_canonical_grid_with_its_voxels():
    """A mask's box in stored indices, moved by the reorientation, is the box of the same
    mask moved as an array, in all 48 orientations."""
    from medground.io.volume import to_ras

    rng = np.random.default_rng(RNG_SEED + 1)
    for linear in _all_orientations():
        affine = _affine(linear, spacing=(0.8, 1.1, 2.5), origin=(5.0, -3.0, 40.0))
        mask = np.zeros((9, 8, 7), dtype=bool)
        low = rng.integers(0, 4, 3)
        high = low + rng.integers(2, 5, 3)
        mask[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = True
        mask[low[0], low[1], low[2]] = False  # not a solid box: the box is of the voxels, still the same
        reorientation = to_ras(mask.shape, affine)
        moved = reorientation.array(mask)
        where = np.nonzero(moved)
        expected = (tuple(int(w.min()) for w in where), tuple(int(w.max()) + 1 for w in where))
        stored = np.nonzero(mask)
        box = reorientation.box([int(w.min()) for w in stored], [int(w.max()) + 1 for w in stored])
        assert box == expected


def test_the_volume_file_is_what_nibabel_reads_and_the_same_bytes_every_time(tmp_path):
    """``render.nifti_bytes``: a canonical volume written as .nii.gz reads back through
    nibabel with its values, type and affine (qform and sform), byte-identical on a second
    call (no gzip timestamp)."""
    from medground.io.volume import to_ras
    from medground.render import nifti_bytes

    affine = _affine(np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), spacing=(0.7, 0.7, 3.0))
    stored = np.random.default_rng(RNG_SEED).integers(-1024, 2000, size=(12, 10, 8)).astype(np.int16)
    reorientation = to_ras(stored.shape, affine)
    data = nifti_bytes(reorientation.array(stored), reorientation.affine(affine))
    assert data == nifti_bytes(reorientation.array(stored), reorientation.affine(affine))
    path = tmp_path / "volume.nii.gz"
    path.write_bytes(data)
    image = nib.load(path)
    assert image.get_data_dtype() == np.int16
    assert np.array_equal(np.asarray(image.dataobj), reorientation.array(stored))
    assert np.allclose(image.affine, reorientation.affine(affine))
    assert np.allclose(image.get_qform(), image.get_sform()) and nib.aff2axcodes(image.affine) == ("R", "A", "S")
