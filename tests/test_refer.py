"""The referring step: every query names exactly its target(s), on real CT, MR and chest
X-rays and on multi-lesion phantoms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medground import rle
from medground.generate import draft_case
from medground.io import find_cases, load_case, load_preset, load_spec
from medground.refer import Scene, matching_distractors
from medground.terms import clinical_term
from phantom_cases import multi_lesion_case as _phantom_case
from real_specs import ct_mr_spec


def assert_unique(samples) -> None:
    """No two targets in one view share a query, and no object of the view other than the
    targets matches a sample's referring attributes (recomputed from the stored cues)."""
    by_view: dict[tuple, dict[str, tuple]] = {}
    for sample in samples:
        key = (sample.case_id, json.dumps(sample.view))
        targets = tuple(sorted(t.object_id for t in sample.targets))
        previous = by_view.setdefault(key, {}).setdefault(sample.query, targets)
        assert previous == targets, f"{sample.query!r} names {previous} and {targets}"
        if sample.query_type == "multi_object":
            attributes = sample.referring_attributes
            if "category" in attributes:
                assert all(d["label"] != attributes["category"] for d in sample.distractors)
            else:  # a pair named by its description: no other object has it
                assert all(
                    clinical_term(d["label"], "abdomen").description_plural != attributes["description"]
                    for d in sample.distractors
                )
            continue
        for distractor in sample.distractors:
            values = distractor["values"]
            assert any(values[k] != v for k, v in sample.referring_attributes.items()), (sample.query, distractor)
        # Each target's box is the box of its stored mask.
        for target in sample.targets:
            assert rle.bbox_xyxy(target.mask_rle) == target.bbox_xyxy
            assert rle.area(target.mask_rle) == target.area_px


@pytest.mark.parametrize("kind", ["CT", "MR"])
def test_real_volumes_give_unique_queries(shared_data: Path, tmp_path: Path, kind: str) -> None:
    spec = load_spec(ct_mr_spec(shared_data, tmp_path, kind))
    case = load_case(spec, find_cases(spec).cases[0])
    drafts = draft_case(case, spec, seed=3)
    assert len(drafts.samples) > 50
    assert {s.query_type for s in drafts.samples} == {"direct", "descriptive", "relational", "multi_object"}
    assert_unique(drafts.samples)
    # An independent re-check over every object of each view (its stored facts): no object
    # but the targets has all the referring attributes.
    for sample in drafts.samples:
        scene = Scene(drafts.facts[sample.image], sample.width, sample.height, spec.body_region)
        targets = [t.object_id for t in sample.targets]
        assert matching_distractors(sample.referring_attributes, scene, targets) == [], sample.query
        assert set(drafts.facts[sample.image]) >= set(targets) | {d["object_id"] for d in sample.distractors}


def test_chest_xray_lungs_are_told_apart_by_side(shared_data: Path) -> None:
    spec = load_preset("cxr_lung", shared_data / "cxr_lung")
    for files in find_cases(spec).cases:
        drafts = draft_case(load_case(spec, files), spec)
        direct = [s for s in drafts.samples if s.query_type == "direct"]
        assert len(direct) == 2
        for sample in direct:
            (target,) = sample.targets
            side = target.cues["laterality"]
            assert sample.referring_attributes["laterality"] == side and f"the {side} lung" in sample.query
            centre = 0.5 * (target.bbox_xyxy[0] + target.bbox_xyxy[2])
            # Radiological display: the patient's right lung on the viewer's left.
            assert (centre < 256) == (side == "right")
        assert_unique(drafts.samples)


@pytest.mark.parametrize("seed", range(4))
def test_multi_lesion_phantoms_give_unique_queries(tmp_path: Path, seed: int) -> None:
    spec, case = _phantom_case(tmp_path, seed)
    drafts = draft_case(case, spec, seed=seed)
    lesion_samples = [s for s in drafts.samples if s.targets[0].label == "liver lesion"]
    assert lesion_samples
    assert_unique(drafts.samples)
    for skip in drafts.skipped:
        assert skip["reason"]


def test_bilateral_lungs_as_one_set(shared_data: Path) -> None:
    spec = load_preset("cxr_lung", shared_data / "cxr_lung")
    drafts = draft_case(load_case(spec, find_cases(spec).cases[0]), spec)
    named, described = sorted(
        (s for s in drafts.samples if s.query_type == "multi_object"),
        key=lambda s: "description" in s.referring_attributes,
    )
    for multi in (named, described):
        assert multi.referring_attributes["laterality"] == "bilateral" and len(multi.targets) == 2
    assert "both lungs" in named.query.lower() or "lungs on both sides" in named.query
    assert "air-filled organs of respiration" in described.query
