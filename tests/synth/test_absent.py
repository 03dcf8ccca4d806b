"""Absent queries (``[synthesis] negatives = true``): never about a structure with a voxel in
the view, the same for the same seed, and none unless asked for."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medground.anatomy import absent_margin, names_overlap
from medground.generate import CaseDrafts, draft_case
from medground.io import find_cases, load_case, load_spec
from medground.io.case import Case
from medground.io.errors import SpecError
from medground.io.schema import DatasetSpec
from medground.records import Sample
from medground.settings import SynthesisSettings
from real_specs import ct_mr_spec


def drafted(spec: DatasetSpec, *, negatives: bool = False) -> list[tuple[Case, CaseDrafts]]:
    out = []
    for files in find_cases(spec).cases:
        case = load_case(spec, files)
        out.append((case, draft_case(case, spec, negatives=negatives)))
    return out


def absent_of(drafts: CaseDrafts) -> list[Sample]:
    return [s for s in drafts.samples if s.query_type == "absent"]


def labels_near(case: Case, sample: Sample) -> set[int]:
    """The label ids with a voxel on the sample's slice or the margin around it (all of a 2D
    image's), by numpy over the label map as loaded."""
    if sample.view is None:
        return {int(i) for i in np.unique(case.labels) if i}
    axis, index = sample.view["array_axis"], sample.view["slice_index"]
    margin = absent_margin(float(case.image.spacing[axis]) if case.image.spacing_known else None)
    lo, hi = max(0, index - margin), min(case.labels.shape[axis], index + margin + 1)
    slab = np.take(case.labels, range(lo, hi), axis=axis)
    return {int(i) for i in np.unique(slab) if i}


def check_absent(case: Case, spec: DatasetSpec, drafts: CaseDrafts) -> int:
    """Asserts every absent draft of a case names a declared label with no voxel in its view
    and no label there whose name overlaps it; returns how many there are."""
    ids = {name: i for i, name in case.label_names.items()}
    absent = absent_of(drafts)
    per_view: dict[str, int] = {}
    for sample in absent:
        assert sample.targets == [] and sample.subset is None
        name = sample.referring_attributes["category"]
        label_id = ids[name]
        assert label_id in spec.labels
        near = labels_near(case, sample)
        assert label_id not in near, f"{sample.query} ({sample.image}): {name} has voxels in the view"
        assert not any(names_overlap(name, case.label_names[p], spec.body_region) for p in near)
        where = "view" if label_id in case.present else "case"
        assert sample.referring_attributes["absent_from"] == where
        per_view[sample.image] = per_view.get(sample.image, 0) + 1
    assert all(n == 1 for n in per_view.values())
    # As for any query, spread slices never repeat one: once per plane, structure and wording.
    said = [((s.view or {}).get("axis"), s.referring_attributes["category"], s.query.lower()) for s in absent]
    assert len(said) == len(set(said))
    return len(absent)


def test_absent_queries_are_never_about_a_structure_with_a_voxel_in_the_view(demo_data: Path) -> None:
    total = 0
    for name in ("demo_ct", "demo_skin"):
        spec = load_spec(demo_data / name / "spec.toml")
        for case, drafts in drafted(spec, negatives=True):
            total += check_absent(case, spec, drafts)
            for sample in absent_of(drafts):
                # The wording names the structure and nothing else about it.
                assert sample.referring_expression is not None
                assert sample.referring_expression in sample.query.lower()
    assert total > 0


def test_absent_queries_on_the_real_ct(shared_data: Path, tmp_path: Path) -> None:
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, "CT"))
    total = sum(check_absent(case, spec, drafts) for case, drafts in drafted(spec, negatives=True))
    assert total > 0


def test_none_unless_asked_for(demo_data: Path) -> None:
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    case, drafts = drafted(spec)[0]
    assert not absent_of(drafts)
    with_negatives = draft_case(case, spec, negatives=True)
    # The other drafts are the same with negatives on.
    positives = [s for s in with_negatives.samples if s.query_type != "absent"]
    assert [s.to_dict() for s in positives] == [s.to_dict() for s in drafts.samples]


def test_the_same_seed_gives_the_same_negatives_whatever_else_the_case_views(demo_data: Path) -> None:
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    case = load_case(spec, find_cases(spec).cases[0])

    def negatives(spec: DatasetSpec, seed: int = 0) -> dict[str, tuple[str, str]]:
        drafts = draft_case(case, spec, seed=seed, negatives=True)
        return {s.id: (s.image, s.query) for s in absent_of(drafts)}

    first = negatives(spec)
    assert first and negatives(spec) == first
    # The choice on a view depends on the view alone, not on the other views drafted before it.
    axial = replace(spec, render=replace(spec.render, axes=("axial",)))
    assert negatives(axial) == {k: v for k, v in first.items() if "/axial_" in v[0]}
    assert negatives(spec, seed=1) == negatives(spec, seed=1)


def test_negatives_must_be_a_boolean() -> None:
    assert SynthesisSettings.from_table({"negatives": True}).negatives
    assert not SynthesisSettings.from_table(None).negatives
    assert SynthesisSettings.from_table({"backend": "simulated", "negatives": True}).negatives
    with pytest.raises(SpecError, match="negatives must be true or false"):
        SynthesisSettings.from_table({"negatives": "yes"})
