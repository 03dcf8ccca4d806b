"""The format stage: a draft's boxes are its masks' boxes, inside the image."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from medground.verify import check_format
from phantom_drafts import lesion_sample, phantom


def test_box_must_match_its_mask(tmp_path: Path) -> None:
    spec, drafts = phantom(tmp_path)
    good = lesion_sample(drafts)
    target = good.targets[0]
    moved = replace(target, bbox_xyxy=[target.bbox_xyxy[0] + 1, *target.bbox_xyxy[1:]])
    result = check_format(replace(good, targets=[moved]))
    assert (result.passed, result.reason) == (False, "box_mask_mismatch")
    outside = replace(target, bbox_xyxy=[0, 0, good.width + 5, 10])
    assert check_format(replace(good, targets=[outside])).reason == "box_outside_image"
