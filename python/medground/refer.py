"""Referring expressions that name exactly one object (or exactly one label's set).

Dale & Reiter's incremental algorithm (1995): walk the attributes in a preference order,
keep an attribute when the target's value rules out at least one remaining distractor,
stop when none remain. The chosen attributes and every distractor's values for them are
stored so that anyone can re-check uniqueness (:func:`matching_distractors`).

What a radiologist would sign:

* The category (the label's clinical term) heads every expression, or a clinical finding
  from the dataset's case table ("the melanoma"). A query that does not name its target
  (``implicit``) names it through clinical knowledge that fixes it instead: the
  vocabulary's description ("the sac that stores bile"), or "lesion" for a finding whose
  every instance the dataset annotates (``exhaustive_labels``: then every candidate a
  reader sees is a labelled object). Nothing is ever a nameless "structure".
* Rank words ("the largest") only come with the category.
* One frame per expression: patient sides (a sided name, laterality, "to the left of")
  and places in the image ("in the upper left part of the image") are never mixed; on
  sagittal views, where image left/right means anterior/posterior, places are only upper
  or lower.
* At most one reference per (targets, attribute set) in a view.

A reference that says no position or side word is in the ``appearance`` subset
(:func:`subset_of`), in the manner of RefCOCO+: its target must be found by what it is
and looks like, never by where it lies.

A target that cannot be singled out is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medground.anatomy import is_lesion
from medground.facts import GENERIC_FINDING, attribute_values, category_key, holds, object_facts
from medground.records import dumps
from medground.terms import clinical_term
from medground.views import View

__all__ = [
    "APPEARANCE",
    "PLACING",
    "PREFERENCE",
    "Reference",
    "Scene",
    "Skip",
    "frame_of",
    "matching_distractors",
    "refer",
    "refer_scene",
    "refer_view",
    "subset_of",
]

#: Attribute preference per query type (clinically sensible order; the head first).
#: Clinical descriptors from the case table follow the head in descriptive queries.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "direct": ("category", "laterality", "within", "size_rank", "position", "shape", "intensity"),
    "descriptive": ("category", "shape", "intensity", "size_class", "position", "laterality", "size_rank"),
    "implicit": ("description", "laterality", "shape", "intensity", "size_class", "within", "position"),
    "relational": ("category", "within", "relation", "laterality", "size_rank"),
}
_PATIENT_SIDES = ("left", "right", "midline", "bilateral")
#: Attributes that say where a target lies: a place in the image, containment in or contact
#: with another structure, a direction to a nearby one.
PLACING = frozenset({"position", "within", "touches", "relation"})
#: The subset of the references that say no position or side word.
APPEARANCE = "appearance"


@dataclass(frozen=True)
class Reference:
    """A distinguishing description of a target (or a label's set) in one view.

    Attributes:
        query_type: direct, descriptive, implicit, relational or multi_object.
        targets: the object ids it names.
        attributes: the chosen attributes and the targets' values.
        distractors: every other object of the view, with its values for those attributes.
        findings: the chosen clinical attributes that are findings (worded as the head).
        label: the (first) target's label, for wording a description's side; never a claim.
        subset: ``appearance`` when the attributes say no position or side word
            (:func:`subset_of`), else None.
    """

    query_type: str
    targets: tuple[int, ...]
    attributes: dict[str, Any]
    distractors: tuple[dict[str, Any], ...]
    findings: tuple[str, ...] = ()
    label: str | None = None
    subset: str | None = None


@dataclass(frozen=True)
class Skip:
    """A target and query type that could not be singled out, and why: ``reason`` is a code
    (``ambiguous``, ``side_contradiction``, ``no_relation``, ``no_description``,
    ``named_by_finding``, ``set_member_not_target``), ``detail`` says it for a person."""

    query_type: str
    targets: tuple[int, ...]
    reason: str
    detail: str = ""


#: Up to this many candidates are checked one by one; more are looked up in the scene's
#: index of which objects have an attribute value (built once per value, then shared by
#: every target: referring stays near-linear in the objects of a view).
_DIRECT = 24


@dataclass(frozen=True)
class Scene:
    """The objects of one view as the referring step and the rules see them."""

    facts: dict[int, dict[str, Any]]
    width: int
    height: int
    body_region: str | None = None
    _holding: dict[tuple[str, Any], frozenset[int]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _values: dict[int, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def holding(self, attribute: str, value: Any) -> frozenset[int]:
        """The objects that have ``attribute`` = ``value`` (computed once per value)."""
        key = (attribute, value)
        found = self._holding.get(key)
        if found is None:
            found = frozenset(c for c in self.facts if self.holds(attribute, value, c))
            self._holding[key] = found
        return found

    def keep(self, attribute: str, value: Any, candidates: set[int]) -> set[int]:
        """The candidates that have ``attribute`` = ``value``."""
        if len(candidates) <= _DIRECT or not _hashable(value):
            return {c for c in candidates if self.holds(attribute, value, c)}
        return candidates & self.holding(attribute, value)

    def all_hold(self, attribute: str, value: Any, candidates: set[int]) -> bool:
        """Whether every candidate has ``attribute`` = ``value`` (:meth:`keep` keeps them
        all), stopping at the first that does not."""
        if len(candidates) <= _DIRECT or not _hashable(value):
            return all(self.holds(attribute, value, c) for c in candidates)
        return candidates <= self.holding(attribute, value)

    def values(self, target: int) -> dict[str, Any]:
        """The attribute values the referring step may use for an object (computed once;
        a copy of its own)."""
        return dict(self.value_of(target))

    def value_of(self, target: int) -> Mapping[str, Any]:
        """The object's attribute values as the scene keeps them (read, never changed)."""
        if target not in self._values:
            self._values[target] = _values(self, target)
        return self._values[target]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def matching_distractors(attributes: dict[str, Any], scene: Scene, targets: Sequence[int]) -> list[int]:
    """Objects other than the targets that have every chosen attribute (should be none)."""
    return [
        c
        for c in scene.facts
        if c not in targets and all(k == "count" or scene.holds(k, v, c) for k, v in attributes.items())
    ]


def frame_of(attribute: str, value: Any, body_region: str | None = None) -> str | None:
    """The frame an attribute value speaks in: ``patient`` (it says a patient side: a sided
    name, a laterality, a left/right direction, a relation to a sided structure),
    ``image`` (a place in the image), or None (neither)."""
    if value is None:
        return None
    if attribute == "position":
        return "image"
    if attribute == "laterality":
        return "patient" if value in _PATIENT_SIDES else None
    if attribute in ("category", "within"):
        return "patient" if clinical_term(str(value), body_region).side else None
    if attribute == "relation":
        direction, _, other = str(value).partition(":")
        if direction in ("left", "right") or clinical_term(other, body_region).side:
            return "patient"
    return None


def subset_of(attributes: dict[str, Any], body_region: str | None = None) -> str | None:
    """``appearance`` when a reference's attributes say no position or side word, as
    RefCOCO+ banned location words; None otherwise.

    A position or side word is: a place in the image, ``within``, ``touches`` or a relation
    (:data:`PLACING`); any laterality (left, right, midline, and bilateral too: "the
    kidneys on both sides"); a category whose clinical term names a side ("the right
    kidney"). What remains (category, description, size rank and class, shape,
    intensity, count and the case table's clinical attributes) says what the target is
    and looks like.
    """
    for name, value in attributes.items():
        if name in PLACING or name == "laterality":
            return None
        if name == "category" and frame_of(name, value, body_region) is not None:
            return None
    return APPEARANCE


def _row_only(position: str | None) -> str | None:
    """A place on a sagittal view, where image left/right is anterior/posterior: the row."""
    if position is None:
        return None
    row = position.split()[0]
    return row if row in ("upper", "lower") else None


def _values(scene: Scene, target: int) -> dict[str, Any]:
    fact = scene.facts[target]
    values = attribute_values(fact)
    if fact.get("plane") == "sagittal":
        values["position"] = _row_only(values["position"])
    values["relation"] = _medial_or_lateral(scene, target, values["relation"])
    # What names it without its name (so that distractors can be re-checked against it).
    values["description"] = (
        GENERIC_FINDING if is_lesion(fact["label"]) else clinical_term(fact["label"], scene.body_region).description
    )
    return values


def _medial_or_lateral(scene: Scene, target: int, relation: str | None) -> str | None:
    """Left/right between two structures on the same side of the body, said as a
    radiologist says it: medial or lateral ("the left adrenal gland medial to the stomach",
    not "… to the right of the stomach")."""
    if relation is None:
        return None
    direction, _, other = relation.partition(":")
    if direction not in ("left", "right"):
        return relation
    for word in ("medial", "lateral"):
        if scene.holds("relation", f"{word}:{other}", target):
            return f"{word}:{other}"
    return relation


def _description(fact: dict[str, Any], body_region: str | None, exhaustive: Collection[str]) -> str | None:
    """How a target may be named without its name: "lesion" for an exhaustively annotated
    finding, else its vocabulary description; None when neither fixes it."""
    if fact["label"] in exhaustive and fact["kind"] == "instance":
        return GENERIC_FINDING
    if fact["kind"] == "organ":
        return clinical_term(fact["label"], body_region).description
    return None


class _Incremental:
    """The incremental algorithm's state for one target: the values it may use, the
    attributes chosen, the frame they speak in and the distractors not yet ruled out."""

    def __init__(self, target: int, scene: Scene, values: dict[str, Any]) -> None:
        self.target, self.scene, self.mine = target, scene, values
        self.chosen: dict[str, Any] = {}
        self.frames: set[str] = set()
        self.remaining = set(scene.facts) - {target}

    def usable(self, attribute: str) -> bool:
        """The target has a value for it that holds, in a frame the expression may still use."""
        value = self.mine.get(attribute)
        if value is None or not self.scene.holds(attribute, value, self.target):
            return False
        frame = frame_of(attribute, value, self.scene.body_region)
        return frame is None or not self.frames - {frame}

    def rules_out(self, attribute: str) -> bool:
        return not self.scene.all_hold(attribute, self.mine[attribute], self.remaining)

    def choose(self, attribute: str) -> None:
        value = self.mine[attribute]
        self.chosen[attribute] = value
        frame = frame_of(attribute, value, self.scene.body_region)
        if frame is not None:
            self.frames.add(frame)
        self.remaining = self.scene.keep(attribute, value, self.remaining)

    def walk(self, order: Sequence[str], heads: Collection[str]) -> None:
        """Heads are always chosen; any other attribute when it rules a distractor out,
        until none remain."""
        for attribute in order:
            if self.usable(attribute) and (attribute in heads or self.rules_out(attribute)):
                self.choose(attribute)
            if not self.remaining and attribute not in heads:
                break

    def add(self, attributes: Sequence[str]) -> None:
        """Attributes said whether or not they are needed (a descriptive query's look and place)."""
        for attribute in attributes:
            if attribute not in self.chosen and self.usable(attribute):
                self.choose(attribute)


def _implicit_head(fact: dict[str, Any], scene: Scene, exhaustive: Collection[str], target: int) -> str | Skip:
    """What an implicit query calls the target, or why it has none."""
    findings = [n for n, role in fact.get("clinical_roles", {}).items() if role == "finding"]
    if findings:
        return Skip("implicit", (target,), "named_by_finding", f"its {findings[0]} names it")
    description = _description(fact, scene.body_region, exhaustive)
    if description is None:
        detail = "no description fixes it without its name, and unlabelled anatomy could fit a nameless query"
        return Skip("implicit", (target,), "no_description", detail)
    return description


def refer(target: int, scene: Scene, query_type: str, *, exhaustive: Collection[str] = ()) -> Reference | Skip:
    """The incremental algorithm for one target among the objects of a view."""
    fact = scene.facts[target]
    mine = scene.values(target)
    roles = fact.get("clinical_roles", {})
    findings = [name for name, role in roles.items() if role == "finding"]
    descriptors = [name for name, role in roles.items() if role == "descriptor"] if query_type == "descriptive" else []
    order = list(PREFERENCE[query_type])
    if query_type == "implicit":
        head = _implicit_head(fact, scene, exhaustive, target)
        if isinstance(head, Skip):
            return head
        mine["description"] = head
    else:
        # A finding is worded as the head, with the category; descriptors follow the head.
        order[1:1] = findings + descriptors
    state = _Incremental(target, scene, mine)
    state.walk(order, {"category", "description", *findings})
    if ("description" if query_type == "implicit" else "category") not in state.chosen:
        detail = f"its label {mine['category']!r} names a side its position contradicts"
        return Skip(query_type, (target,), "side_contradiction", detail)
    if query_type in ("descriptive", "implicit"):
        # What it looks like and where it is; a finding's density and size belong to its look.
        looks = ("intensity", "size_class") if fact["kind"] == "instance" and is_lesion(fact["label"]) else ()
        state.add(("shape", *descriptors, *looks, "position"))
    if query_type == "relational" and not {"within", "relation"} & state.chosen.keys():
        key = next((k for k in ("within", "relation") if state.usable(k)), None)
        if key is None:
            return Skip(query_type, (target,), "no_relation", "no containing or nearby structure to relate to")
        state.choose(key)
    if state.remaining:
        names = sorted({scene.facts[c]["category"] for c in state.remaining})
        detail = f"{len(state.remaining)} other object(s) ({', '.join(names)}) share every attribute"
        return Skip(query_type, (target,), "ambiguous", detail)
    chosen = state.chosen
    said = tuple(f for f in findings if f in chosen)
    return Reference(
        query_type,
        (target,),
        chosen,
        _distractors(chosen, scene, (target,)),
        said,
        fact["label"],
        subset_of(chosen, scene.body_region),
    )


def _distractors(chosen: dict[str, Any], scene: Scene, targets: tuple[int, ...]) -> tuple[dict[str, Any], ...]:
    return tuple(
        {
            "object_id": c,
            "label": fact["label"],
            **(
                {"bbox_xyxy": list(fact["bbox_xyxy"])}
                if fact["bbox_xyxy"] is not None
                else {"bbox_3d": [list(v) for v in fact["bbox_3d"]]}
            ),
            "values": {k: values.get(k) for k in chosen if k != "count"},
        }
        for c, fact in sorted(scene.facts.items())
        if c not in targets
        for values in (scene.value_of(c),)
    )


def _sets(
    scene: Scene, targets: Sequence[int], not_target: Mapping[int, tuple[str, str] | None]
) -> list[tuple[tuple[int, ...], dict[str, Any]] | Skip]:
    """The multi-object sets of a view: every object of an instance class or numbered
    series ("every liver lesion", "the left ribs"), and bilateral pairs of organs ("both
    kidneys", and, where the vocabulary describes the pair, "both retroperitoneal
    organs that produce urine"). Organs are never counted. A set is asked about only when
    each member could be a target on its own (visible, not a sliver) and one member is a
    target of the view."""
    groups: dict[str, list[int]] = {}
    for object_id in sorted(scene.facts):
        fact = scene.facts[object_id]
        if fact["kind"] != "organ":
            groups.setdefault(fact["category"], []).append(object_id)
        elif fact["laterality"] in ("left", "right") and clinical_term(fact["label"], scene.body_region).side:
            groups.setdefault(category_key(fact["label"], scene.body_region), []).append(object_id)
    out: list[tuple[tuple[int, ...], dict[str, Any]] | Skip] = []
    for category, members in groups.items():
        if len(members) < 2 or not set(members) & set(targets):
            continue
        kinds = {scene.facts[m]["kind"] for m in members}
        sides = {scene.facts[m]["laterality"] for m in members}
        if kinds == {"organ"} and (len(members) != 2 or sides != {"left", "right"}):
            continue
        blocked = [m for m in members if not_target.get(m) is not None]
        if blocked:
            first = not_target.get(blocked[0]) or ("", "")
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
        pair = clinical_term(scene.facts[members[0]]["label"], scene.body_region)
        if attributes.get("laterality") == "bilateral" and len(members) == 2 and pair.description_plural:
            out.append(
                (tuple(members), {"description": pair.description_plural, "count": 2, "laterality": "bilateral"})
            )
    return out


def _key(targets: tuple[int, ...], attributes: dict[str, Any]) -> str:
    return dumps([list(targets), sorted(attributes.items())], default=str)


def refer_view(
    view: View,
    cues: dict[int, dict[str, Any]],
    body_region: str | None = None,
    *,
    exhaustive: Collection[str] = (),
    facts: dict[int, dict[str, Any]] | None = None,
) -> tuple[list[Reference], list[Skip]]:
    """References for every target of a view: direct, descriptive, implicit (named through
    a description or as an exhaustively annotated finding), relational, and the
    multi-object sets; at most one per (targets, attribute set). ``facts``: the view's
    :func:`object_facts` where the caller has them (read, never changed)."""
    scene = Scene(object_facts(view, cues) if facts is None else facts, view.width, view.height, body_region)
    not_target = {object_id: obj.not_target for object_id, obj in view.objects.items()}
    return refer_scene(scene, view.targets, not_target, exhaustive=exhaustive)


def refer_scene(
    scene: Scene,
    targets: Sequence[int],
    not_target: Mapping[int, tuple[str, str] | None],
    *,
    exhaustive: Collection[str] = (),
) -> tuple[list[Reference], list[Skip]]:
    """:func:`refer_view` over any scene: a view's objects, or every object of a volume
    (``not_target``: why an object may not be asked about, None when it may)."""
    references: list[Reference] = []
    skips: list[Skip] = []
    seen: set[str] = set()

    def add(reference: Reference) -> None:
        key = _key(reference.targets, reference.attributes)
        if key not in seen:
            seen.add(key)
            references.append(reference)

    for target in targets:
        for query_type in ("direct", "descriptive", "implicit", "relational"):
            result = refer(target, scene, query_type, exhaustive=exhaustive)
            if isinstance(result, Reference):
                add(result)
            elif not (query_type == "implicit" and result.reason in ("no_description", "named_by_finding")):
                skips.append(result)
    for found in _sets(scene, targets, not_target):
        if isinstance(found, Skip):
            skips.append(found)
            continue
        members, attributes = found
        head = {"category": attributes["category"]} if "category" in attributes else {}
        label = scene.facts[members[0]]["label"]
        distractors = _distractors(head, scene, members)
        subset = subset_of(attributes, scene.body_region)
        add(Reference("multi_object", members, attributes, distractors, label=label, subset=subset))
    return references, skips
