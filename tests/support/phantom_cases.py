"""Phantom cases shared by several test folders: a small liver phantom with three lesions
(verification, backends, synthesis), a multi-lesion phantom (referring, anchors, the
template), and the inputs a synthesizer gets for one view."""

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


def multi_lesion_case(tmp_path: Path, seed: int) -> tuple:
    """A CT phantom (seeded): an ellipsoid liver and five hypo- or hyperdense lesions, some
    inside it and some outside; its spec (every slice, at most six) in ``tmp_path/s.toml``."""
    rng = np.random.default_rng(seed)
    shape = (64, 64, 24)
    image = rng.normal(40, 10, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    labels[((grid - (32, 32, 12)) ** 2 / (26**2, 26**2, 10**2)).sum(-1) <= 1] = 1  # the organ
    for _ in range(5):  # lesions, some inside the organ, some outside
        centre = rng.uniform((8, 8, 4), (56, 56, 20))
        radius = rng.uniform(2, 5)
        blob = ((grid - centre) ** 2).sum(-1) <= radius**2
        labels[blob] = 2
        image[blob] = rng.choice([-10.0, 90.0])
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    (tmp_path / "s.toml").write_text(
        'name = "phantom"\nmodality = "CT"\nbody_region = "abdomen"\n[cases]\nimage = "img.nii.gz"\n'
        'mask = "seg.nii.gz"\n[labels]\n1 = "liver"\n2 = "liver lesion"\n[render]\nslices = "all"\nmax_slices = 6\n'
    )
    spec = load_spec(tmp_path / "s.toml")
    return spec, load_case(spec, find_cases(spec).cases[0])


def view_inputs(spec, case):
    """The first view of the case with its cues and references (what draft_case hands a synthesizer)."""
    from medground import render
    from medground.anchors import find_anchors
    from medground.cues import case_context, compute_cues
    from medground.refer import refer_view
    from medground.views import build_views

    objects = find_anchors(case, spec)
    body = render.body_mask(case.image, spec.modality)
    views, _ = build_views(case, objects, spec, body)
    context = case_context(case, objects, spec.modality, body, spec.body_region)
    view = views[0]
    cues = compute_cues(view, context)
    references, _ = refer_view(view, cues, spec.body_region)
    return view, cues, references
