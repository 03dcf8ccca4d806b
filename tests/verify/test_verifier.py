"""The verifier over the phantom's template drafts: they all pass; adversarial drafts are
rejected at the right stage with the right reason; the funnel counts add up."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medground.generate import verify_drafts
from medground.verify import Funnel
from phantom_drafts import phantom, run


def test_template_drafts_of_the_phantom_all_pass(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    accepted, rejected, funnel = verify_drafts(drafts, spec)
    assert accepted and not rejected, [r["rejection"] for r in rejected]
    assert funnel.to_dict()["accepted"] == len(accepted) == funnel.drafts
    for sample in accepted:
        assert set(sample.verification) == {"format", "rules", "visual"}
        assert all(result["passed"] for result in sample.verification.values())


@pytest.mark.parametrize(
    ("query", "stage", "reason"),
    [
        ("Locate the liver lesion.", "rules", "ambiguous"),
        ("Locate the largest liver lesion on the patient's right.", "rules", "laterality_mismatch"),
        ("Locate the 9 cm liver lesion.", "rules", "measurement_mismatch"),
        ("Locate the largest of the five liver lesions.", "rules", "count_mismatch"),
        ("Locate the largest liver lesion at 120, 45.", "format", "leaked_number"),
        ("Locate the largest liver lesion inside the red box.", "format", "leaked_rendering"),
        ("Locate the {adjective} liver lesion.", "format", "unfilled_slot"),
        ("Sure! I think it is the largest liver lesion.", "format", "register"),
        ("Lesion.", "format", "query_length"),
        ("Locate the largest hyperdense liver lesion.", "rules", "intensity_mismatch"),
        ("Locate the largest liver lesion in the lower right part of the image.", "rules", "position_mismatch"),
        ("Locate the largest kidney.", "rules", "unknown_structure"),
        ("Locate the liver lesion adjacent to the aorta.", "rules", "unknown_structure"),
        ("Locate the liver.", "rules", "category_mismatch"),
    ],
)
def test_adversarial_drafts_are_rejected_with_their_reason(tmp_path: Path, query: str, stage: str, reason: str) -> None:
    spec, drafts = phantom(tmp_path)
    good = next(
        s for s in drafts.samples if s.query_type == "direct" and s.referring_attributes.get("size_rank") == "largest"
    )
    assert run(spec, drafts, good)[1] is None
    checked, failed = run(spec, drafts, replace(good, query=query))
    assert failed is not None and (failed.stage, failed.reason) == (stage, reason), (failed, checked.verification)
    assert checked.verification[stage]["reason"] == reason


def test_funnel_counts_add_up(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    bad = [replace(s, query="Locate the liver lesion.") for s in drafts.samples if s.query_type == "direct"]
    drafts.samples.extend(bad)
    accepted, rejected, funnel = verify_drafts(drafts, spec)
    summary = funnel.to_dict()
    assert summary["drafts"] == len(accepted) + len(rejected)
    rejected_total = sum(sum(r.values()) for r in summary["rejected"].values())
    assert rejected_total == len(rejected) and summary["accepted"] == len(accepted)
    merged = Funnel()
    merged.merge(funnel)
    merged.merge(funnel)
    assert merged.to_dict()["drafts"] == 2 * summary["drafts"]
