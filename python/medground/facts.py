"""An object's facts, and what it means for an object to have an attribute value.

:func:`object_facts` turns the cues of every object in a view into flat, JSON-ready facts
(they travel with the drafts to verification). :func:`holds` is the one definition of
having an attribute value, used by the referring step (which picks attributes that rule
distractors out) and by the rules stage of verification (which checks that a query's
claims pick out exactly its targets), so the two always agree.
"""

from __future__ import annotations

from typing import Any

from medground.anatomy import is_lesion
from medground.cues import in_plane_direction, world_direction
from medground.terms import category_key, clinical_term
from medground.words import ATTRIBUTES, in_cell

__all__ = [
    "BUILT_IN",
    "GENERIC_FINDING",
    "WITHIN_SHARE",
    "attribute_values",
    "category_key",
    "describes",
    "holds",
    "in_cell",
    "object_facts",
]

#: The referring step's own attributes; any other attribute name is a clinical attribute
#: from the dataset's case table (``fact["clinical"]``).
BUILT_IN = ATTRIBUTES
#: The description of a finding whose class is annotated exhaustively ("the lesion").
GENERIC_FINDING = "lesion"

#: Share of an object's boundary another structure must cover for "within" to hold.
WITHIN_SHARE = 0.25


def _seen(fact: dict[str, Any], other: dict[str, Any]) -> str | None:
    """Where ``fact`` lies relative to ``other``: in the plane shown, or, for the whole
    structures of a volume sample (boxes in RAS+ mm), in the patient."""
    if fact.get("bbox_ras") is not None and other.get("bbox_ras") is not None:
        return world_direction(fact["bbox_ras"], other["bbox_ras"])
    return in_plane_direction(fact["bbox_xyxy"], other["bbox_xyxy"], fact["directions"])


def _direction(direction: str, fact: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether ``fact`` lies in ``direction`` of ``other`` (:func:`_seen`); medial and
    lateral only between objects on the same side: toward the midline (the other side's
    direction) is medial, away from it lateral."""
    if direction in ("medial", "lateral"):
        side = fact["laterality"]
        if side not in ("left", "right") or other["laterality"] != side:
            return False
        toward_midline = "right" if side == "left" else "left"
        return _seen(fact, other) == (toward_midline if direction == "medial" else side)
    return _seen(fact, other) == direction


def _named(value: str, name: str | None, body_region: str | None) -> bool:
    """Whether a structure named ``name`` in the facts is the one ``value`` names (the same
    clinical term, with the same side where ``value`` gives one)."""
    if name is None or category_key(name, body_region) != category_key(value, body_region):
        return False
    side = clinical_term(value, body_region).side
    return side is None or clinical_term(name, body_region).side == side


def describes(value: str, fact: dict[str, Any], body_region: str | None = None) -> bool:
    """Whether a description without the name fixes this object's kind: its vocabulary
    description (singular or plural), or "lesion" for a lesion-like object."""
    if value == GENERIC_FINDING:
        return is_lesion(fact["label"])
    term = clinical_term(fact["label"], body_region)
    return value in (term.description, term.description_plural)


def holds(
    attribute: str,
    value: Any,
    fact: dict[str, Any],
    facts: dict[int, dict[str, Any]],
    *,
    width: int,
    height: int,
    body_region: str | None = None,
) -> bool:
    """Whether an object (``fact``) has ``attribute`` = ``value`` as a reader would judge it.

    ``category`` compares clinical terms (a sided name also needs that side), ``position``
    asks whether the box's centre lies in the named part of the image, ``within`` accepts
    the containing structure or one covering a quarter of the outline, ``relation``
    ("inferior:liver") asks for that in-plane direction to any object of that category.
    """
    if attribute == "category":
        if category_key(fact["category"], body_region) != category_key(value, body_region):
            return False
        side = clinical_term(value, body_region).side
        return side is None or fact["laterality"] == side
    if attribute == "description":
        return describes(value, fact, body_region)
    if attribute == "position":
        return in_cell(fact["bbox_xyxy"], value, width, height)
    if attribute == "within":
        return bool(
            fact["within"] == value
            or fact["boundary_shares"].get(value, 0.0) >= WITHIN_SHARE
            or _named(value, fact["within"], body_region)
        )
    if attribute == "touches":
        return value in fact["touches"] or any(_named(value, name, body_region) for name in fact["touches"])
    if attribute == "relation":
        direction, _, other_name = value.partition(":")
        return any(
            _direction(direction, fact, other)
            for other in facts.values()
            if other is not fact
            and holds("category", other_name, other, facts, width=width, height=height, body_region=body_region)
        )
    if attribute not in BUILT_IN:
        return bool(fact.get("clinical", {}).get(attribute) == value)
    return bool(fact.get(attribute) == value)


def object_facts(view: Any, cues: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The facts of every object in a view (a :class:`medground.views.View`) that the
    referring step and the rules reason with, by object id (JSON-ready, so they travel
    with the drafts)."""
    facts = {}
    for object_id, obj in view.objects.items():
        cue = cues[object_id]
        nearest = cue["relations"].get("nearest")
        facts[object_id] = {
            "label": obj.anchor.label,
            "category": cue["count"]["category"],
            "kind": cue["kind"],
            "bbox_xyxy": list(obj.bbox_xyxy),
            "area_px": obj.area_px,
            "pieces": cue["pieces"],
            "directions": None if view.directions is None else list(view.directions),
            "position": cue["image_position"],
            "nearest": f"{nearest['direction']}:{nearest['label']}" if nearest and nearest.get("direction") else None,
            "laterality": cue["laterality"],
            "midline_offset_mm": cue.get("midline_offset_mm"),
            "centroid_world": cue.get("centroid_world"),
            "shape": cue["shape"],
            "intensity": (cue.get("intensity") or {}).get("relation"),
            "size_class": cue["size"]["size_class"],
            "size_rank": cue["count"]["size_extreme"],
            "diameter_mm": cue["size"]["diameter_mm"],
            "volume_ml": cue["size"]["volume_ml"],
            "within": cue["relations"]["within"],
            "touches": list(cue["relations"]["touches"]),
            "boundary_shares": dict(cue["relations"]["boundary_shares"]),
            "cross_section_share": cue["visibility"]["cross_section_share"],
            "cut_by_border": cue["visibility"]["cut_by_border"],
            "plane": view.plane,
            "clinical": {name: item["value"] for name, item in cue.get("clinical", {}).items()},
            "clinical_roles": {name: item["role"] for name, item in cue.get("clinical", {}).items()},
        }
    return facts


def attribute_values(fact: dict[str, Any]) -> dict[str, Any]:
    """The referable attribute values of one object, from its facts."""
    return {
        "category": fact["category"],
        "laterality": fact["laterality"] if fact["laterality"] in ("left", "right", "midline") else None,
        "within": fact["within"],
        "size_rank": fact["size_rank"],
        "size_class": fact["size_class"],
        "position": fact["position"],
        "shape": fact["shape"],
        "intensity": fact["intensity"],
        "relation": fact["nearest"],
        **fact.get("clinical", {}),
    }
