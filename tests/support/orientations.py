"""Affines of known orientations (axis-aligned, flipped, oblique and permuted) for the
readers' and the volume helpers' tests."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

RNG_SEED = 20240611


SPACING = (0.7, 1.3, 2.5)


ORIGIN = (12.5, -40.0, 7.25)


_TILT = Rotation.from_rotvec(np.deg2rad([3.0, -4.0, 5.0])).as_matrix()


ORIENTATIONS = {  # direction cosines (columns: array axes) in RAS+
    "RAS": np.eye(3),
    "LPS": np.diag([-1.0, -1.0, 1.0]),
    "oblique_permuted": _TILT[:, [1, 2, 0]] * np.array([1.0, -1.0, 1.0]),
}


def oriented_affine(direction: np.ndarray, spacing=SPACING, origin=ORIGIN) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def reoriented_case(case, codes: tuple[str, str, str]):
    """The same case stored in another orientation (``codes``: the axis codes of the copy):
    the same anatomy and labels on a permuted, flipped grid, the affine to match."""
    from dataclasses import replace

    import nibabel.orientations as nio

    from medground.io.volume import Volume

    image = case.image
    transform = nio.ornt_transform(nio.io_orientation(image.affine), nio.axcodes2ornt(codes))
    array = nio.apply_orientation(image.array, transform)
    labels = nio.apply_orientation(case.labels, transform)
    affine = image.affine @ nio.inv_ornt_aff(transform, image.array.shape)
    volume = Volume(np.ascontiguousarray(array), affine, image.path, True, image.metadata)
    return replace(case, image=volume, labels=np.ascontiguousarray(labels))
