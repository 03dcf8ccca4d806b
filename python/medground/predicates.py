"""What it means for an object to have an attribute value: one definition for the referring
step (which picks attributes that rule distractors out) and the rules stage of verification
(which checks that a query's claims pick out exactly its targets), so the two always agree.

Objects are described by their *facts* (:func:`medground.verify.stages.object_facts`).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from medground.terms import clinical_term

__all__ = ["category_key", "holds", "in_cell"]

#: Share of an object's boundary another structure must cover for "within" to hold.
WITHIN_SHARE = 0.25

_CELLS = {
    "upper left": (0, 0), "upper": (None, 0), "upper right": (2, 0), "left": (0, None), "center": (1, 1),
    "right": (2, None), "lower left": (0, 2), "lower": (None, 2), "lower right": (2, 2),
}


def category_key(label: str, body_region: str | None = None) -> str:
    """A label's clinical term without its side: "kidney" for kidney_left, "L1 vertebra"."""
    term = clinical_term(label, body_region)
    text = term.text.lower()
    if term.side is not None:
        text = re.sub(rf"\b{term.side}(?:-sided)?\b", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def in_cell(box: list[int], position: str, width: int, height: int) -> bool:
    """Whether a box reaches into the part of the image a position word names (3×3 grid)."""
    column, row = _CELLS[position]
    x0, y0, x1, y1 = box
    if column is not None and not (x0 < (column + 1) * width / 3 and x1 > column * width / 3):
        return False
    return row is None or (y0 < (row + 1) * height / 3 and y1 > row * height / 3)


def _direction(direction: str, fact: dict[str, Any], other: dict[str, Any]) -> bool:
    if fact["centroid_world"] is None or other["centroid_world"] is None:
        return False
    delta = np.subtract(fact["centroid_world"], other["centroid_world"])
    if direction in ("superior", "inferior"):
        return bool(delta[2] > 0) == (direction == "superior") and delta[2] != 0
    if direction in ("anterior", "posterior"):
        return bool(delta[1] > 0) == (direction == "anterior") and delta[1] != 0
    if fact["midline_offset_mm"] is None or other["midline_offset_mm"] is None:
        return False
    if fact["midline_offset_mm"] == other["midline_offset_mm"]:
        return False
    return (fact["midline_offset_mm"] < other["midline_offset_mm"]) == (direction == "medial")


def holds(attribute: str, value: Any, fact: dict[str, Any], facts: dict[int, dict[str, Any]], *,
          width: int, height: int, body_region: str | None = None) -> bool:
    """Whether an object (``fact``) has ``attribute`` = ``value`` as a reader would judge it.

    ``category`` compares clinical terms (a sided label also needs that side), ``position``
    asks whether the box reaches into the named part of the image, ``within`` accepts the
    containing structure or one covering a quarter of the boundary, ``relation``
    ("inferior:liver") asks for that direction to any object of the other label.
    """
    if attribute == "category":
        if category_key(fact["label"], body_region) != category_key(value, body_region):
            return False
        side = clinical_term(value, body_region).side
        return side is None or fact["laterality"] == side
    if attribute == "position":
        return in_cell(fact["bbox_xyxy"], value, width, height)
    if attribute == "within":
        return fact["within"] == value or fact["boundary_shares"].get(value, 0.0) >= WITHIN_SHARE
    if attribute == "touches":
        return value in fact["touches"]
    if attribute == "relation":
        direction, _, other_label = value.partition(":")
        return any(_direction(direction, fact, other) for other in facts.values()
                   if other["label"] == other_label and other is not fact)
    return bool(fact.get(attribute) == value)
