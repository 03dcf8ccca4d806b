"""A small liver phantom with three lesions, shared by the verification and backend tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from medground.io import Case, DatasetSpec, find_cases, load_case, load_spec


def liver_phantom(tmp_path: Path, faint: bool = False) -> tuple[DatasetSpec, Case]:
    """A uniform organ (CT, stored LPS) with three lesions: two hypodense ones (left and
    right of the image) and a third that is hypodense, or (``faint``) exactly as dense as
    the organ."""
    shape = (90, 90, 9)
    rng = np.random.default_rng(0)
    image = np.full(shape, -100.0, np.float32) + rng.normal(0, 2, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float32)
    organ = ((grid - (45, 45, 4)) ** 2 / (40**2, 40**2, 6**2)).sum(-1) <= 1
    labels[organ] = 1
    image[organ] = 60 + rng.normal(0, 2, organ.sum())
    for centre, radius, value in (
        ((45, 20, 4), 6, 10.0),
        ((45, 70, 4), 4, 10.0),
        ((22, 45, 4), 5, 60.0 if faint else 10.0),
    ):
        blob = ((grid - centre) ** 2).sum(-1) <= radius**2
        labels[blob] = 2
        image[blob] = value + rng.normal(0, 2, blob.sum())
    affine = np.diag([-1.0, -1.0, 3.0, 1.0])  # LPS
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    (tmp_path / "s.toml").write_text(
        'name = "phantom"\nmodality = "CT"\nbody_region = "abdomen"\n[cases]\nimage = "img.nii.gz"\n'
        'mask = "seg.nii.gz"\n'
        '[labels]\n1 = "liver"\n2 = "liver lesion"\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    return spec, load_case(spec, find_cases(spec).cases[0])
