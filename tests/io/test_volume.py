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
