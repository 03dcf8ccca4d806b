"""Facts: what it means for an object to have an attribute value (facts.holds, shared by
the referring step and the rules stage), table by table at and on both sides of every
documented threshold: WITHIN_SHARE, the 3×3 image cells of a box's centre, and the in-plane
direction rules (left/right, anterior/posterior, superior/inferior by the plane shown;
medial/lateral between objects on one side, in the plane shown)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from medground import cues, facts


def fact(label: str = "liver lesion", **values: Any) -> dict[str, Any]:
    """An object's facts: only what the attribute under test reads is meaningful."""
    return {
        "label": label,
        "category": label,
        "kind": "organ",
        "directions": ["P", "L"],
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
# [100, 150). A position word is judged by the cell of the box's centre: a row word (upper,
# lower) takes any column, a column word (left, right) any row.
@pytest.mark.parametrize(
    ("position", "box", "expected"),
    [
        ("upper left", [0, 0, 100, 50], True),  # centre (50, 25)
        ("upper left", [0, 0, 198, 98], True),  # centre (99, 49)
        ("upper left", [0, 0, 200, 98], False),  # centre (100, 49): the middle column
        ("upper left", [0, 0, 198, 100], False),  # centre (99, 50): the middle row
        ("upper left", [99, 49, 300, 150], False),  # reaches into it, centred elsewhere
        ("center", [0, 0, 300, 150], True),
        ("center", [0, 0, 101, 51], False),  # centre (50.5, 25.5)
        ("center", [199, 99, 201, 101], False),  # centre (200, 100): lower right
        ("center", [198, 98, 200, 100], True),  # centre (199, 99)
        ("upper right", [200, 0, 300, 10], True),
        ("upper right", [199, 0, 201, 10], True),  # centre x = 200
        ("upper right", [198, 0, 200, 10], False),
        ("lower left", [0, 99, 10, 101], True),  # centre y = 100
        ("lower left", [0, 98, 10, 100], False),
        ("lower right", [200, 100, 300, 150], True),
        ("upper", [250, 0, 300, 10], True),
        ("upper", [0, 0, 10, 99], True),  # centre y = 49.5
        ("upper", [0, 0, 10, 100], False),
        ("lower", [0, 99, 10, 101], True),
        ("lower", [0, 0, 300, 100], False),
        ("left", [0, 140, 100, 150], True),
        ("left", [0, 0, 199, 1], True),  # centre x = 99.5
        ("left", [0, 0, 200, 1], False),
        ("right", [199, 0, 201, 1], True),
        ("right", [0, 0, 300, 150], False),
    ],
)
def test_image_cells_by_the_centre_of_the_box(position: str, box: list[int], expected: bool) -> None:
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


# Axial view in radiological display: columns grow toward the patient's left. The spleen's
# box is [100, 100, 120, 120]; a box left of it in the image is on the patient's right of it.
LEFT_IN_IMAGE, RIGHT_IN_IMAGE, OVERLAPPING = [60, 100, 80, 120], [140, 100, 160, 120], [105, 100, 125, 120]


@pytest.mark.parametrize(
    ("direction", "sides", "box", "expected"),
    [
        # Both on the patient's left: toward the patient's right (the midline) is medial.
        ("medial", ("left", "left"), LEFT_IN_IMAGE, True),
        ("lateral", ("left", "left"), LEFT_IN_IMAGE, False),
        ("lateral", ("left", "left"), RIGHT_IN_IMAGE, True),
        ("medial", ("left", "left"), RIGHT_IN_IMAGE, False),
        # Both on the patient's right: toward the patient's left is medial.
        ("medial", ("right", "right"), RIGHT_IN_IMAGE, True),
        ("lateral", ("right", "right"), LEFT_IN_IMAGE, True),
        ("lateral", ("right", "right"), RIGHT_IN_IMAGE, False),
        # Overlapping along the axis: neither.
        ("medial", ("left", "left"), OVERLAPPING, False),
        ("lateral", ("left", "left"), OVERLAPPING, False),
        # Across the midline, or with a midline object, or without sides: never.
        ("medial", ("left", "right"), LEFT_IN_IMAGE, False),
        ("lateral", ("right", "left"), LEFT_IN_IMAGE, False),
        ("medial", ("midline", "midline"), LEFT_IN_IMAGE, False),
        ("lateral", (None, None), LEFT_IN_IMAGE, False),
    ],
)
def test_medial_and_lateral_only_on_one_side(
    direction: str, sides: tuple[str | None, str | None], box: list[int], expected: bool
) -> None:
    target = fact(bbox_xyxy=box, laterality=sides[0])
    other = spleen(bbox_xyxy=[100, 100, 120, 120], laterality=sides[1])
    assert holds("relation", f"{direction}:spleen", target, other) is expected


# The spleen's box is [100, 100, 120, 120]; rows and columns of each plane grow toward the
# patient directions of radiological display (axial: posterior, left; coronal: inferior,
# left; sagittal: inferior, posterior).
PLANES = {"axial": ["P", "L"], "coronal": ["I", "L"], "sagittal": ["I", "P"]}


@pytest.mark.parametrize(
    ("plane", "box", "direction", "expected"),
    [
        # Axial: image right is the patient's left, image up is anterior.
        ("axial", [130, 100, 150, 120], "left", True),
        ("axial", [130, 100, 150, 120], "right", False),
        ("axial", [70, 100, 90, 120], "right", True),
        ("axial", [100, 60, 120, 80], "anterior", True),
        ("axial", [100, 140, 120, 160], "posterior", True),
        ("axial", [100, 60, 120, 80], "superior", False),  # out of plane
        # Coronal: up is superior.
        ("coronal", [100, 60, 120, 80], "superior", True),
        ("coronal", [100, 140, 120, 160], "inferior", True),
        ("coronal", [100, 60, 120, 80], "anterior", False),  # out of plane
        ("coronal", [130, 100, 150, 120], "left", True),
        # Sagittal: left is anterior, up superior; no left or right.
        ("sagittal", [70, 100, 90, 120], "anterior", True),
        ("sagittal", [130, 100, 150, 120], "posterior", True),
        ("sagittal", [130, 100, 150, 120], "left", False),
        ("sagittal", [100, 60, 120, 80], "superior", True),
        # Along the larger offset only, and only where the boxes do not overlap along it by
        # more than 10% of the smaller extent (2 px of 20).
        ("axial", [118, 100, 138, 120], "left", True),  # overlap 2 px
        ("axial", [117, 100, 137, 120], "left", False),  # overlap 3 px
        ("axial", [105, 105, 115, 115], "left", False),  # inside it
        ("axial", [160, 125, 180, 145], "left", True),  # offset x 60 > y 25
        ("axial", [160, 125, 180, 145], "posterior", False),
    ],
)
def test_directions_in_the_plane_shown(plane: str, box: list[int], direction: str, expected: bool) -> None:
    target = fact(bbox_xyxy=box, directions=PLANES[plane])
    other = spleen(bbox_xyxy=[100, 100, 120, 120], directions=PLANES[plane])
    assert holds("relation", f"{direction}:spleen", target, other) is expected


def test_no_direction_without_orientation() -> None:
    target = fact(bbox_xyxy=[130, 100, 150, 120], directions=None)
    other = spleen(bbox_xyxy=[100, 100, 120, 120], directions=None)
    assert not any(holds("relation", f"{d}:spleen", target, other) for d in ("left", "right", "anterior"))


def test_a_direction_to_any_object_of_the_other_label_but_itself() -> None:
    between = fact(bbox_xyxy=[130, 100, 150, 120])
    near, far = spleen(bbox_xyxy=[100, 100, 120, 120]), spleen(bbox_xyxy=[160, 100, 180, 120])
    assert holds("relation", "left:spleen", between, near, far)
    assert holds("relation", "right:spleen", between, near, far)
    assert not holds("relation", "left:spleen", spleen(bbox_xyxy=[130, 100, 150, 120]))  # only itself


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


def test_a_series_member_is_named_by_its_series() -> None:
    # A rib's category is its series and side: "left rib" fits any left rib, whatever its number.
    rib = fact("rib_left_7", category="left rib", laterality="left", kind="series")
    assert holds("category", "left rib", rib)
    assert holds("category", "rib", rib)
    assert not holds("category", "right rib", rib)
