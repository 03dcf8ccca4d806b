"""The format stage: a draft's boxes are its masks' boxes, inside the image."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    ("query", "reason", "detail"),
    [
        # Several leak words: the vocabulary's first is named ("box" before "red").
        ("Locate the liver lesion inside the red box.", "leaked_rendering", "'box'"),
        ("Locate the liver lesion in YELLOW.", "leaked_rendering", "'yellow'"),
        ("Locate the liver lesion on the bounding box edge.", "leaked_rendering", "'bounding box'"),
        ("Locate the liver lesion of label id 3.", "leaked_rendering", "'label id'"),
        ("Locate the liver lesion of class 3.", "leaked_identifier", "label id"),
        # Hyphens join words: "red-brown" is not the overlay's colour; "boxy" is no box.
        ("Locate the red-brown boxy liver lesion.", None, None),
    ],
)
def test_queries_that_leak_the_rendering(tmp_path: Path, query: str, reason: str | None, detail: str | None) -> None:
    spec, drafts = phantom(tmp_path)
    result = check_format(replace(lesion_sample(drafts), query=query))
    assert (result.passed, result.reason) == (reason is None, reason), result
    if detail is not None:
        assert detail in result.detail
