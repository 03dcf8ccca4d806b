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

from medground.facts import attribute_values, holds, object_facts
from medground.views import View

__all__ = [
    "PREFERENCE",
    "Reference",
    "Scene",
    "Skip",
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


@dataclass(frozen=True)
class Scene:
    """The objects of one view as the referring step and the rules see them."""

    facts: dict[int, dict[str, Any]]
    width: int
    height: int
    body_region: str | None = None

    def holds(self, attribute: str, value: Any, component: int) -> bool:
        return holds(
            attribute,
            value,
            self.facts[component],
            self.facts,
            width=self.width,
            height=self.height,
            body_region=self.body_region,
        )


def matching_distractors(attributes: dict[str, Any], scene: Scene, targets: Sequence[int]) -> list[int]:
    """Objects other than the targets that have every chosen attribute (should be none)."""
    return [
        c
        for c in scene.facts
        if c not in targets and all(k == "count" or scene.holds(k, v, c) for k, v in attributes.items())
    ]


def refer(target: int, scene: Scene, query_type: str) -> Reference | Skip:
    """The incremental algorithm for one target among the objects of a view."""
    order = PREFERENCE[query_type]
    mine = attribute_values(scene.facts[target])
    remaining = [c for c in scene.facts if c != target]
    # Same label first: the objects a reader is likeliest to confuse with the target.
    remaining.sort(key=lambda c: (scene.facts[c]["label"] != mine["category"], c))
    chosen: dict[str, Any] = {}

    def choose(attribute: str) -> None:
        nonlocal remaining
        chosen[attribute] = mine[attribute]
        remaining = [c for c in remaining if scene.holds(attribute, mine[attribute], c)]

    for attribute in order:
        if mine.get(attribute) is None or not scene.holds(attribute, mine[attribute], target):
            continue
        if attribute == "category" or any(not scene.holds(attribute, mine[attribute], c) for c in remaining):
            choose(attribute)
        if not remaining:
            break
    if query_type in PREFERENCE and "category" in order and "category" not in chosen:
        return Skip(query_type, (target,), f"its label {mine['category']!r} names a side its position contradicts")
    if query_type in ("descriptive", "implicit"):
        # Descriptive queries say what it looks like and where it is, needed or not.
        for attribute in ("shape", "position"):
            if attribute not in chosen and mine.get(attribute) is not None:
                choose(attribute)
    if query_type == "relational" and not {"within", "relation"} & chosen.keys():
        key = "within" if mine.get("within") else "relation" if mine.get("relation") else None
        if key is None or not scene.holds(key, mine[key], target):
            return Skip(query_type, (target,), "no containing or nearby structure to relate to")
        choose(key)
    if query_type == "implicit" and len(chosen) < 2:
        return Skip(query_type, (target,), "too few attributes to describe it without its name")
    if remaining:
        names = sorted({scene.facts[c]["label"] for c in remaining})
        return Skip(
            query_type, (target,), f"{len(remaining)} other object(s) ({', '.join(names)}) share every attribute"
        )
    return Reference(query_type, (target,), chosen, _distractors(chosen, scene, (target,)))


def _distractors(chosen: dict[str, Any], scene: Scene, targets: tuple[int, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "component_id": c,
            "label": fact["label"],
            "bbox_xyxy": list(fact["bbox_xyxy"]),
            "values": {k: attribute_values(fact).get(k) for k in chosen if k != "count"},
        }
        for c, fact in sorted(scene.facts.items())
        if c not in targets
    )


def refer_view(
    view: View, cues: dict[int, dict[str, Any]], body_region: str | None = None
) -> tuple[list[Reference], list[Skip]]:
    """References for every target of a view: direct, descriptive (with and without the
    category), relational, and one multi-object set per label with several objects."""
    scene = Scene(object_facts(view, cues), view.width, view.height, body_region)
    references: list[Reference] = []
    skips: list[Skip] = []
    for target in view.targets:
        for query_type in ("direct", "descriptive", "implicit", "relational"):
            result = refer(target, scene, query_type)
            if isinstance(result, Reference):
                references.append(result)
            else:
                skips.append(result)
    by_label: dict[str, list[int]] = {}
    for component in sorted(scene.facts):
        by_label.setdefault(scene.facts[component]["label"], []).append(component)
    for label, members in by_label.items():
        if len(members) > 1 and set(members) & set(view.targets):
            attributes: dict[str, Any] = {"category": label, "count": len(members)}
            sides = {scene.facts[c]["laterality"] for c in members}
            if {"left", "right"} <= sides:
                attributes["laterality"] = "bilateral"
            references.append(
                Reference(
                    "multi_object", tuple(members), attributes, _distractors({"category": label}, scene, tuple(members))
                )
            )
    return references, skips
