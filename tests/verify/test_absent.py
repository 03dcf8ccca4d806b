"""Verifying absent queries: the format stage takes an empty target list only for them; the
rules measure the absence again from the view's label map and reject a draft whose
structure shows, however little of it; the visual stage records that it did not judge them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medground.generate import CaseDrafts, draft_case, verify_drafts, view_measurements
from medground.io import find_cases, load_case, load_spec
from medground.io.schema import DatasetSpec
from medground.records import Sample
from medground.verify import ABSENT_SKIP, Measurements, Verifier, check_format
from medground.views import View


@pytest.fixture(scope="module")
def demo(demo_data: Path) -> tuple[DatasetSpec, CaseDrafts]:
    spec = load_spec(demo_data / "demo_ct" / "spec.toml")
    case = load_case(spec, find_cases(spec).cases[0])
    return spec, draft_case(case, spec, negatives=True)


def absent(drafts: CaseDrafts, k: int = 0) -> tuple[Sample, View]:
    sample = [s for s in drafts.samples if s.query_type == "absent"][k]
    return sample, next(v for v in drafts.views if v.image_file == sample.image)


def verdict(spec: DatasetSpec, drafts: CaseDrafts, sample: Sample, measures: Measurements | None = None):
    view = next(v for v in drafts.views if v.image_file == sample.image)
    measures = measures or view_measurements(drafts, spec, view)
    return Verifier().verify(sample, drafts.facts[sample.image], measures)


def test_absent_drafts_pass_and_skip_the_judge_with_the_reason_recorded(demo) -> None:
    spec, drafts = demo
    accepted, rejected, funnel = verify_drafts(drafts, spec)
    absent = [s for s in accepted if s.query_type == "absent"]
    assert absent and not [r for r in rejected if r["query_type"] == "absent"]
    for sample in absent:
        rules = sample.verification["rules"]
        assert rules["passed"] and sample.referring_attributes["category"] not in rules["info"]["labels_in_view"]
        assert sample.verification["visual"] == {"passed": True, "info": {"judge": "evidence", "skipped": ABSENT_SKIP}}


def test_rules_reject_an_absent_draft_whose_structure_is_present(demo) -> None:
    spec, drafts = demo
    sample, view = absent(drafts)
    shown = view.objects[view.targets[0]].anchor.label
    mutated = replace(
        sample,
        query=f"Locate the {shown.replace('_', ' ')}.",
        referring_attributes={"category": shown, "absent_from": "view"},
    )
    _, failed = verdict(spec, drafts, mutated)
    assert failed is not None and (failed.stage, failed.reason) == ("rules", "structure_present")


@pytest.mark.parametrize("offset", [0, 1])
def test_a_few_voxels_on_the_slice_or_next_to_it_make_it_present(demo, offset: int) -> None:
    """Voxels too few to be an object, on the view's slice or the next one, still count:
    the rules read the label map as loaded, not the objects."""
    spec, drafts = demo
    sample, view = absent(drafts)
    measures = view_measurements(drafts, spec, view)
    evidence = measures.evidence
    assert evidence.label_map is not None and evidence.slice_axis is not None and evidence.slice_index is not None
    label_id = next(i for i, n in evidence.label_names.items() if n == sample.referring_attributes["category"])
    painted = np.array(evidence.label_map)
    where = [0, 0, 0]
    where[evidence.slice_axis] = evidence.slice_index + offset
    painted[tuple(where)] = label_id  # one voxel, in a corner of the slice
    _, failed = verdict(spec, drafts, sample, Measurements(replace(evidence, label_map=painted)))
    assert failed is not None and failed.reason == "structure_present"
    _, passed = verdict(spec, drafts, sample, Measurements(evidence))
    assert passed is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("Point to it here.", "absent_unnamed"),
        ("Locate the appendix.", "absent_unnamed"),
        ("Locate the {term} in the upper part of the image.", "absent_claims"),
        ("Locate the small {term}.", "absent_claims"),
    ],
)
def test_rules_reject_an_absent_query_that_names_nothing_or_claims_more(demo, query: str, reason: str) -> None:
    spec, drafts = demo
    sample, _ = absent(drafts)
    mutated = replace(sample, query=query.format(term=sample.referring_expression.removeprefix("the ")))
    _, failed = verdict(spec, drafts, mutated)
    assert failed is not None and (failed.stage, failed.reason) == ("rules", reason)


def test_rules_reject_an_absent_draft_whose_record_disagrees_with_the_label_map(demo) -> None:
    spec, drafts = demo
    sample, _ = absent(drafts)
    wrong = {"view": "case", "case": "view"}[sample.referring_attributes["absent_from"]]
    _, failed = verdict(
        spec, drafts, replace(sample, referring_attributes={**sample.referring_attributes, "absent_from": wrong})
    )
    assert failed is not None and failed.reason == "facts_disagree"
    assert failed.info["fact"] == "absent"


def test_only_an_absent_query_may_have_no_target(demo) -> None:
    _, drafts = demo
    sample, _ = absent(drafts)
    positive = next(s for s in drafts.samples if s.query_type == "direct")
    assert check_format(sample).passed
    assert check_format(replace(positive, targets=[])).reason == "schema"
    assert check_format(replace(sample, query_type="direct")).reason == "schema"
    with_target = replace(sample, targets=positive.targets)
    failed = check_format(with_target)
    assert failed.reason == "schema" and "absent query" in str(failed.detail)
