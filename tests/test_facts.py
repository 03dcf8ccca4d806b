"""Facts: what it means for an object to have an attribute value (facts.holds, shared by
the referring step and the rules stage), table by table at and on both sides of every
documented threshold: WITHIN_SHARE, the 3×3 image cells and the direction rules
(superior/inferior, anterior/posterior, medial/lateral)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from medground import cues, facts


def fact(label: str = "liver lesion", **values: Any) -> dict[str, Any]:
    """An object's facts: only what the attribute under test reads is meaningful."""
    return {
        "label": label,
        "bbox_xyxy": [0, 0, 1, 1],
        "laterality": None,
        "within": None,
        "boundary_shares": {},
        "touches": [],
        "centroid_world": [0.0, 0.0, 0.0],
        "midline_offset_mm": None,
        **values,
    }


def holds(attribute: str, value: Any, target: dict[str, Any], *others: dict[str, Any]) -> bool:
    scene = {k: f for k, f in enumerate([target, *others], start=1)}
    return facts.holds(attribute, value, target, scene, width=300, height=150, body_region="abdomen")


def test_the_documented_share() -> None:
    assert facts.WITHIN_SHARE == 0.25


@pytest.mark.parametrize(
    ("within", "shares", "value", "expected"),
    [
        # A structure covering a quarter of the boundary: "within" holds.
        (None, {"liver": 0.24}, "liver", False),
        (None, {"liver": 0.25}, "liver", True),
        (None, {"liver": 0.26}, "liver", True),
        (None, {}, "liver", False),
        # The containing structure (the cue's own ≥ 50%) always holds.
        ("liver", {}, "liver", True),
        ("liver", {"liver": 0.6}, "liver", True),
        # And so does a second structure over a quarter.
        ("liver", {"liver": 0.6, "kidney_left": 0.24}, "kidney_left", False),
        ("liver", {"liver": 0.6, "kidney_left": 0.25}, "kidney_left", True),
    ],
)
def test_within_needs_a_quarter_of_the_boundary(
    within: str | None, shares: dict[str, float], value: str, expected: bool
) -> None:
    assert holds("within", value, fact(within=within, boundary_shares=shares)) is expected


# A 300 × 150 image: columns [0, 100), [100, 200), [200, 300); rows [0, 50), [50, 100),
# [100, 150). Boxes have continuous edges (max exclusive): a box "reaches into" a cell when
# it overlaps it by more than an edge. A row word (upper, lower) takes any column, a column
# word (left, right) any row.
@pytest.mark.parametrize(
    ("position", "box", "expected"),
    [
        ("upper left", [0, 0, 100, 50], True),
        ("upper left", [99, 49, 300, 150], True),  # one pixel into it
        ("upper left", [100, 0, 300, 50], False),  # starts on the column edge
        ("upper left", [0, 50, 100, 150], False),  # starts on the row edge
        ("center", [0, 0, 100, 50], False),  # ends on both edges
        ("center", [0, 0, 101, 51], True),
        ("center", [199, 99, 300, 150], True),
        ("center", [200, 100, 300, 150], False),
        ("upper right", [199, 0, 300, 10], True),
        ("upper right", [0, 0, 200, 150], False),
        ("lower left", [0, 99, 10, 150], True),
        ("lower left", [0, 0, 100, 100], False),
        ("lower right", [200, 100, 300, 150], True),
        ("lower right", [0, 0, 201, 100], False),
        ("upper", [250, 0, 300, 10], True),
        ("upper", [0, 49, 10, 51], True),
        ("upper", [0, 50, 300, 150], False),
        ("lower", [0, 99, 10, 101], True),
        ("lower", [0, 0, 300, 100], False),
        ("left", [0, 140, 100, 150], True),
        ("left", [99, 0, 101, 1], True),
        ("left", [100, 0, 300, 150], False),
        ("right", [199, 0, 201, 1], True),
        ("right", [0, 0, 200, 150], False),
    ],
)
def test_image_cells(position: str, box: list[int], expected: bool) -> None:
    assert facts.in_cell(box, position, 300, 150) is expected
    assert holds("position", position, fact(bbox_xyxy=box)) is expected


def test_a_box_is_in_the_cell_of_its_own_position() -> None:
    # cues.image_position (the box's centre) and facts.in_cell (what the box reaches into)
    # agree: the position a cue gives always holds, for every box of a small image.
    width, height = 9, 6
    for x0, x1 in itertools.combinations(range(width + 1), 2):
        for y0, y1 in itertools.combinations(range(height + 1), 2):
            box = [x0, y0, x1, y1]
            position = cues.image_position(box, width, height)
            assert facts.in_cell(box, position, width, height), (box, position)


def spleen(**values: Any) -> dict[str, Any]:
    return fact("spleen", **values)


@pytest.mark.parametrize(
    ("direction", "target_mm", "spleen_mm", "expected"),
    [
        # medial: nearer the midline than the other object; lateral: farther.
        ("medial", 10.0, 20.0, True),
        ("lateral", 10.0, 20.0, False),
        ("medial", 20.0, 10.0, False),
        ("lateral", 20.0, 10.0, True),
        ("medial", 14.99, 15.0, True),
        ("lateral", 15.01, 15.0, True),
        # Equally far: neither.
        ("medial", 15.0, 15.0, False),
        ("lateral", 15.0, 15.0, False),
        # No midline (no patient orientation): neither.
        ("medial", None, 15.0, False),
        ("lateral", 15.0, None, False),
    ],
)
def test_medial_and_lateral_compare_distances_to_the_midline(
    direction: str, target_mm: float | None, spleen_mm: float | None, expected: bool
) -> None:
    target = fact(midline_offset_mm=target_mm)
    assert holds("relation", f"{direction}:spleen", target, spleen(midline_offset_mm=spleen_mm)) is expected


@pytest.mark.parametrize(
    ("direction", "offset", "expected"),
    [
        # The target's centroid minus the other's (RAS+ mm): the sign along that axis decides,
        # whichever axis is the largest.
        ("superior", (0.0, 0.0, 1.0), True),
        ("inferior", (0.0, 0.0, 1.0), False),
        ("inferior", (0.0, 0.0, -0.5), True),
        ("superior", (50.0, -40.0, 0.1), True),
        ("superior", (0.0, 0.0, 0.0), False),
        ("inferior", (0.0, 0.0, 0.0), False),
        ("anterior", (0.0, 2.0, 0.0), True),
        ("posterior", (0.0, 2.0, 0.0), False),
        ("posterior", (0.0, -2.0, 0.0), True),
        ("anterior", (10.0, 0.0, 10.0), False),
        ("posterior", (10.0, 0.0, 10.0), False),
    ],
)
def test_directions_along_the_body_axes(direction: str, offset: tuple[float, float, float], expected: bool) -> None:
    target = fact(centroid_world=list(offset))
    assert holds("relation", f"{direction}:spleen", target, spleen(centroid_world=[0.0, 0.0, 0.0])) is expected


@pytest.mark.parametrize("direction", ["superior", "anterior", "medial", "lateral"])
def test_no_direction_without_centroids(direction: str) -> None:
    target = fact(centroid_world=None, midline_offset_mm=10.0)
    assert not holds("relation", f"{direction}:spleen", target, spleen(midline_offset_mm=20.0))
    target = fact(centroid_world=[0.0, 0.0, 1.0], midline_offset_mm=10.0)
    assert not holds("relation", f"{direction}:spleen", target, spleen(centroid_world=None, midline_offset_mm=20.0))


def test_a_direction_to_any_object_of_the_other_label_but_itself() -> None:
    between = fact(midline_offset_mm=20.0)
    near, far = spleen(midline_offset_mm=10.0), spleen(midline_offset_mm=30.0)
    assert holds("relation", "medial:spleen", between, near, far)
    assert holds("relation", "lateral:spleen", between, near, far)
    assert not holds("relation", "medial:spleen", spleen(midline_offset_mm=5.0))  # only itself


@pytest.mark.parametrize(
    ("value", "label", "laterality", "expected"),
    [
        ("liver lesion", "liver lesion", None, True),
        ("liver", "liver lesion", None, False),
        # A sided category also needs that side, computed from geometry.
        ("kidney_left", "kidney_left", "left", True),
        ("kidney_left", "kidney_left", "right", False),
        ("kidney_left", "kidney_left", None, False),
        ("kidney_right", "kidney_left", "right", True),
        ("kidney", "kidney_left", "right", True),
    ],
)
def test_category_compares_clinical_terms_and_sides(
    value: str, label: str, laterality: str | None, expected: bool
) -> None:
    assert holds("category", value, fact(label, laterality=laterality)) is expected
