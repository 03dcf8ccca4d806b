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

from medground.facts import attribute_values, category_key, holds, object_facts
from medground.terms import clinical_term
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
    """A target and query type that could not be singled out, and why: ``reason`` is a code
    (``ambiguous``, ``side_contradiction``, ``no_relation``, ``too_few_attributes``,
    ``set_member_not_target``), ``detail`` says it for a person."""

    query_type: str
    targets: tuple[int, ...]
    reason: str
    detail: str = ""


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
    remaining.sort(key=lambda c: (scene.facts[c]["category"] != mine["category"], c))
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
        return Skip(
            query_type,
            (target,),
            "side_contradiction",
            f"its label {mine['category']!r} names a side its position contradicts",
        )
    if query_type in ("descriptive", "implicit"):
        # Descriptive queries say what it looks like and where it is, needed or not.
        for attribute in ("shape", "position"):
            if attribute not in chosen and mine.get(attribute) is not None:
                choose(attribute)
    if query_type == "relational" and not {"within", "relation"} & chosen.keys():
        key = "within" if mine.get("within") else "relation" if mine.get("relation") else None
        if key is None or not scene.holds(key, mine[key], target):
            return Skip(query_type, (target,), "no_relation", "no containing or nearby structure to relate to")
        choose(key)
    if query_type == "implicit" and len(chosen) < 2:
        return Skip(query_type, (target,), "too_few_attributes", "too few attributes to describe it without its name")
    if remaining:
        names = sorted({scene.facts[c]["category"] for c in remaining})
        return Skip(
            query_type,
            (target,),
            "ambiguous",
            f"{len(remaining)} other object(s) ({', '.join(names)}) share every attribute",
        )
    return Reference(query_type, (target,), chosen, _distractors(chosen, scene, (target,)))


def _distractors(chosen: dict[str, Any], scene: Scene, targets: tuple[int, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "object_id": c,
            "label": fact["label"],
            "bbox_xyxy": list(fact["bbox_xyxy"]),
            "values": {k: attribute_values(fact).get(k) for k in chosen if k != "count"},
        }
        for c, fact in sorted(scene.facts.items())
        if c not in targets
    )


def _sets(view: View, scene: Scene) -> list[tuple[tuple[int, ...], dict[str, Any]] | Skip]:
    """The multi-object sets of a view: every object of an instance class or numbered
    series ("every liver lesion", "the left ribs"), and bilateral pairs of organs ("both
    kidneys"). Organs are never counted. A set is asked about only when each member could
    be a target on its own (visible, not a sliver) and one member is a target of the view."""
    groups: dict[str, list[int]] = {}
    for object_id in sorted(scene.facts):
        fact = scene.facts[object_id]
        if fact["kind"] != "organ":
            groups.setdefault(fact["category"], []).append(object_id)
        elif fact["laterality"] in ("left", "right") and clinical_term(fact["label"], scene.body_region).side:
            groups.setdefault(category_key(fact["label"], scene.body_region), []).append(object_id)
    out: list[tuple[tuple[int, ...], dict[str, Any]] | Skip] = []
    for category, members in groups.items():
        if len(members) < 2 or not set(members) & set(view.targets):
            continue
        kinds = {scene.facts[m]["kind"] for m in members}
        sides = {scene.facts[m]["laterality"] for m in members}
        if kinds == {"organ"} and (len(members) != 2 or sides != {"left", "right"}):
            continue
        blocked = [m for m in members if view.objects[m].not_target is not None]
        if blocked:
            first = view.objects[blocked[0]].not_target or ("", "")
            out.append(
                Skip(
                    "multi_object",
                    tuple(members),
                    "set_member_not_target",
                    f"{len(blocked)} member(s) could not be targets ({first[0]})",
                )
            )
            continue
        # An organ pair is named by a member's label ("kidney_left": its term's plural is "kidneys").
        named = scene.facts[members[0]]["label"] if kinds == {"organ"} else category
        attributes: dict[str, Any] = {"category": named, "count": len(members)}
        if {"left", "right"} <= sides:
            attributes["laterality"] = "bilateral"
        out.append((tuple(members), attributes))
    return out


def refer_view(
    view: View, cues: dict[int, dict[str, Any]], body_region: str | None = None
) -> tuple[list[Reference], list[Skip]]:
    """References for every target of a view: direct, descriptive (with and without the
    category, the latter for instance classes only), relational, and the multi-object sets."""
    scene = Scene(object_facts(view, cues), view.width, view.height, body_region)
    references: list[Reference] = []
    skips: list[Skip] = []
    for target in view.targets:
        implicit = ("implicit",) if scene.facts[target]["kind"] == "instance" else ()
        types = ("direct", "descriptive", *implicit, "relational")
        for query_type in types:
            result = refer(target, scene, query_type)
            if isinstance(result, Reference):
                references.append(result)
            else:
                skips.append(result)
    for found in _sets(view, scene):
        if isinstance(found, Skip):
            skips.append(found)
            continue
        members, attributes = found
        distractors = _distractors({"category": attributes["category"]}, scene, members)
        references.append(Reference("multi_object", members, attributes, distractors))
    return references, skips
