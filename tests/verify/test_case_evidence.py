"""What a case's volume evidence measures once for all its views: each object's voxels and
whether it touches the volume's border, against numpy over the object map itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medground.anchors import find_anchors
from medground.io import find_cases, load_case, load_spec
from medground.verify.measure import CaseEvidence
from real_specs import ct_mr_spec


def _reference(objects: np.ndarray) -> tuple[dict[int, int], frozenset[int]]:
    ids, counts = np.unique(objects, return_counts=True)
    faces = [objects[0], objects[-1], objects[:, 0], objects[:, -1], objects[:, :, 0], objects[:, :, -1]]
    border = set(np.unique(np.concatenate([f.ravel() for f in faces])).tolist()) - {0}
    return {int(i): int(n) for i, n in zip(ids, counts, strict=True) if i}, frozenset(border)


def test_voxels_and_border_objects_equal_numpy_over_the_map(shared_data: Path, tmp_path: Path) -> None:
    for kind in ("CT", "MR"):
        spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
        case = load_case(spec, find_cases(spec).cases[0])
        objects = find_anchors(case, spec)
        expected = _reference(np.asarray(objects.map))
        assert expected[1], "some organ is cut by the field of view"
        handed = CaseEvidence(objects.map, case.image.array, case.image.affine, kind, areas=objects.slice_areas)
        own = CaseEvidence(objects.map, case.image.array, case.image.affine, kind)  # counts them itself
        assert handed.stats == expected
        assert own.stats == expected
