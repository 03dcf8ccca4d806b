"""The evidence judge: a target too faint against its surroundings is rejected."""

from __future__ import annotations

from pathlib import Path

from medground.verify import judge_evidence
from phantom_drafts import phantom


def test_a_lesion_too_faint_to_see_fails_the_evidence_judge(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path, faint=True)
    faint = [
        s
        for s in drafts.samples
        if s.targets[0].label == "liver lesion" and abs(s.targets[0].cues["intensity"]["contrast"]) < 5
    ]
    assert faint
    view = next(v for v in drafts.views if v.view_record() == faint[0].view)
    result = judge_evidence(faint[0], view.values)
    assert (result.passed, result.reason) == (False, "low_contrast")
    visible = next(
        s
        for s in drafts.samples
        if s.view == faint[0].view
        and s.targets[0].label == "liver lesion"
        and abs(s.targets[0].cues["intensity"]["contrast"]) > 20
    )
    assert judge_evidence(visible, view.values).passed
