"""Referring expressions that name exactly one object (or exactly one label's set).

Dale & Reiter's incremental algorithm (1995): walk the attributes in a preference order,
keep an attribute when the target's value rules out at least one remaining distractor,
stop when none remain. The category (the label) heads every expression unless the query is
implicit. A target that cannot be singled out is skipped with the reason. The chosen
attributes and every distractor's values for them are stored so that anyone can re-check
uniqueness (:func:`matching_distractors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medground.anchors import View

__all__ = [
    "PREFERENCE",
    "Reference",
    "Skip",
    "attribute_values",
    "matching_distractors",
    "refer",
    "refer_view",
]

#: Attribute preference per query type (clinically sensible order; category first).
PREFERENCE: dict[str, tuple[str, ...]] = {
    "direct": ("category", "laterality", "within", "size_rank", "position", "shape", "intensity"),
    "descriptive": ("category", "shape", "intensity", "size_class", "position", "laterality", "size_rank"),
    "implicit": ("shape", "intensity", "size_class", "position", "laterality", "size_rank", "within"),
    "relational": ("category", "within", "relation", "laterality", "size_rank"),
}


def attribute_values(cues: dict[str, Any], label: str) -> dict[str, Any]:
    """The referable attribute values of one object, from its cues."""
    relations = cues["relations"]
    nearest = relations.get("nearest") or {}
    relation = None
    if nearest.get("direction") and nearest.get("label"):
        relation = f"{nearest['direction']}:{nearest['label']}"
    return {
        "category": label,
        "laterality": cues["laterality"] if cues["laterality"] in ("left", "right", "midline") else None,
        "within": relations.get("within"),
        "size_rank": cues["count"]["size_extreme"],
        "size_class": cues["size"]["size_class"],
        "position": cues["image_position"],
        "shape": cues["shape"],
        "intensity": (cues.get("intensity") or {}).get("relation"),
        "relation": relation,
    }


@dataclass(frozen=True)
class Reference:
    """A distinguishing description of a target (or a label's set) in one view."""

    query_type: str
    targets: tuple[int, ...]
    attributes: dict[str, Any]
    distractors: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Skip:
    """A target and query type that could not be singled out, and why."""

    query_type: str
    targets: tuple[int, ...]
    reason: str


def matching_distractors(attributes: dict[str, Any], values: dict[int, dict[str, Any]], targets: Sequence[int]) -> list[int]:
    """Objects other than the targets that match every chosen attribute (should be none)."""
    return [c for c, v in values.items() if c not in targets and all(v.get(k) == a for k, a in attributes.items())]


def refer(target: int, values: dict[int, dict[str, Any]], query_type: str) -> Reference | Skip:
    """The incremental algorithm for one target among the objects of a view."""
    order = PREFERENCE[query_type]
    mine = values[target]
    remaining = [c for c in values if c != target]
    # Same label first: the objects a reader is likeliest to confuse with the target.
    remaining.sort(key=lambda c: (values[c]["category"] != mine["category"], c))
    chosen: dict[str, Any] = {}
    for attribute in order:
        value = mine.get(attribute)
        if value is None:
            continue
        ruled_out = [c for c in remaining if values[c].get(attribute) != value]
        if attribute == "category" or ruled_out:
            chosen[attribute] = value
            remaining = [c for c in remaining if values[c].get(attribute) == value]
        if not remaining:
            break
    if query_type in ("descriptive", "implicit"):
        # Descriptive queries say what it looks like and where it is, needed or not.
        for attribute in ("shape", "position"):
            if attribute not in chosen and mine.get(attribute) is not None:
                chosen[attribute] = mine[attribute]
    if query_type == "relational" and not {"within", "relation"} & chosen.keys():
        key = "within" if mine.get("within") else "relation" if mine.get("relation") else None
        if key is None:
            return Skip(query_type, (target,), "no containing or nearby structure to relate to")
        chosen[key] = mine[key]
    if query_type == "implicit" and len(chosen) < 2:
        return Skip(query_type, (target,), "too few attributes to describe it without its name")
    if remaining:
        names = sorted({values[c]["category"] for c in remaining})
        return Skip(query_type, (target,), f"{len(remaining)} other object(s) ({', '.join(names)}) share every attribute")
    return Reference(query_type, (target,), chosen, _distractors(chosen, values, (target,)))


def _distractors(chosen: dict[str, Any], values: dict[int, dict[str, Any]], targets: tuple[int, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"component_id": c, "label": v["category"], "values": {k: v.get(k) for k in chosen}}
        for c, v in sorted(values.items()) if c not in targets
    )


def refer_view(view: View, cues: dict[int, dict[str, Any]]) -> tuple[list[Reference], list[Skip]]:
    """References for every target of a view: direct, descriptive (with and without the
    category), relational, and one multi-object set per label with several objects."""
    values = {c: attribute_values(cues[c], view.objects[c].anchor.label) for c in view.objects}
    references: list[Reference] = []
    skips: list[Skip] = []
    for target in view.targets:
        for query_type in ("direct", "descriptive", "implicit", "relational"):
            result = refer(target, values, query_type)
            (references if isinstance(result, Reference) else skips).append(result)
    by_label: dict[str, list[int]] = {}
    for component in sorted(view.objects):
        by_label.setdefault(values[component]["category"], []).append(component)
    for label, members in by_label.items():
        if len(members) > 1 and set(members) & set(view.targets):
            attributes = {"category": label, "count": len(members)}
            others = {c: v for c, v in values.items() if c not in members}
            references.append(Reference("multi_object", tuple(members), attributes,
                                        _distractors({"category": label}, {**others}, tuple(members))))
    return references, skips
