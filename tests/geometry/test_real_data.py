"""The geometry core on the real CT and MR label maps in ../shared/data."""

from __future__ import annotations

import json

import cc3d
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from skimage import measure

from medground.geometry import connected_components, contacts, overlap, regionprops
from partitions import same_partition

CASES = [("ct_abdomen_totalseg", "ct.nii.gz"), ("mr_abdomen_totalseg", "mr.nii.gz")]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request, shared_data):
    folder = shared_data / request.param[0]
    seg = nib.load(folder / "seg.nii.gz")
    image = nib.load(folder / request.param[1])
    labels = np.asanyarray(seg.dataobj)
    names = json.loads((folder / "labels.json").read_text())
    return labels, np.asanyarray(image.dataobj), seg.header.get_zooms()[:3], names


def test_nibabel_fortran_arrays_label_like_cc3d(case):
    labels, _, _, _ = case
    assert labels.flags.f_contiguous and not labels.flags.c_contiguous
    ours, n = connected_components(labels, 26, return_n=True)
    assert ours.flags.f_contiguous
    ref, ref_n = cc3d.connected_components(np.ascontiguousarray(labels), connectivity=26, return_N=True)
    assert n == ref_n
    assert same_partition(ours, ref)


def test_label_statistics_match_skimage_and_simpleitk(case):
    labels, image, zooms, names = case
    spacing = tuple(float(z) for z in zooms)
    table = regionprops(labels, spacing, intensity=image)
    present = sorted(set(np.unique(labels)) - {0})
    assert list(table.label) == present
    assert all(str(int(v)) in names for v in table.label)
    ref = measure.regionprops(np.ascontiguousarray(labels), intensity_image=np.ascontiguousarray(image))
    for i, r in enumerate(ref):
        assert table.voxel_count[i] == r.area
        assert tuple(table.bbox_min[i]) + tuple(table.bbox_max[i]) == r.bbox
        np.testing.assert_allclose(table.centroid[i], r.centroid, rtol=1e-9)
        np.testing.assert_allclose(table.intensity_mean[i], r.intensity_mean, rtol=1e-9)
    itk = sitk.GetImageFromArray(np.ascontiguousarray(labels).astype(np.uint32))
    itk.SetSpacing(spacing[::-1])
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(itk)
    for i, label in enumerate(table.label):
        moments = np.sort(stats.GetPrincipalMoments(int(label)))[::-1]
        np.testing.assert_allclose(4 * np.sqrt(np.clip(moments, 0, None)), table.axis_lengths[i], rtol=1e-6, atol=1e-6)
    # Tiny regions read above 1: the midpoint surface of a few voxels is smaller than a ball's.
    assert np.all(np.isfinite(table.sphericity) & (table.sphericity > 0))
    for i, label in enumerate(table.label):
        padded = np.pad((labels == label).astype(np.float32), 1)
        verts, faces, *_ = measure.marching_cubes(padded, 0.5, spacing=spacing)
        # Thin structures have many faces with diagonal inside corners, which we split
        # so the region reads 6-connected and scikit-image's Lewiner tables may not.
        rtol = 0.03 if table.voxel_count[i] >= 1000 else 0.1
        np.testing.assert_allclose(table.surface_area[i], measure.mesh_surface_area(verts, faces), rtol=rtol)


def test_organs_touch_their_neighbours(case):
    labels, _, _, names = case
    table = contacts(labels, 6)
    assert len(table) > 5
    inv = {v: int(k) for k, v in names.items()}
    liver = inv.get("liver")
    if liver is not None and liver in set(np.unique(labels)):
        assert liver in set(table.a) | set(table.b)
    components = connected_components(labels, 26)
    assert overlap(labels, components).count.sum() == np.count_nonzero(labels)
