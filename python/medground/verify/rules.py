"""Verification stage 2 (rules): the query's claims are true of its target(s), measured
again from the view's evidence; the cues the query relies on agree with those
measurements; the claims pick out exactly the target(s); the target is plausible.

Every fact is measured by :mod:`medground.verify.measure` from the stored image, the masks
in it, the voxel↔pixel map and the volume, not read from the cue record the synthesizer was
given. A claim whose cue the measurement contradicts is rejected as ``facts_disagree``
(naming the fact): the cue, not the wording, is wrong. A claim the measurement contradicts
is rejected with the fact's own code.

Reason codes: ``facts_disagree``, ``category_mismatch``, ``laterality_mismatch``,
``side_without_orientation``, ``position_on_sagittal``, ``position_mismatch``,
``shape_mismatch``, ``intensity_mismatch``, ``size_mismatch``, ``measurement_mismatch``,
``relation_mismatch``, ``count_mismatch``, ``clinical_mismatch``, ``ambiguous``,
``no_match``, ``unknown_structure``, ``laterality_prior``, ``implausible_size``,
``unexpected_region``, ``outside_container``, ``below_visibility_floor``, ``schema``,
``foreign_text`` (a link, an address or the words of an instruction: no claim about the
image at all, whatever labels it appears in; what a model writes when it follows an
instruction hidden in dataset text).

An absent query (``query_type = "absent"``, no target) is checked by :func:`check_absent`:
``structure_present`` (the structure it names, or one whose name covers or is covered by
it, has a voxel in the view by the label map as loaded), ``absent_unnamed`` (it names no
structure of the dataset), ``absent_claims`` (it claims more than the structure: a place,
a side its term does not carry, a relation, a size, shape, intensity, count or clinical
attribute: none can be true of what is not there) and ``facts_disagree`` (``info.fact =
"absent"``: the draft's ``category`` is not what the query names, or its ``absent_from``
is not where the label map lacks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medground import rle
from medground.anatomy import is_lesion, names_overlap, priors
from medground.records import Sample, StageResult
from medground.terms import category_key, clinical_term
from medground.verify.claims import Claims, extract_claims
from medground.verify.measure import WITHIN_SHARE, Measured, Measurements, intensity_direction, sides_of
from medground.words import in_cell

__all__ = ["RuleSettings", "check_absent", "check_rules"]


@dataclass(frozen=True)
class RuleSettings:
    """Tolerances of the rules stage."""

    length_tolerance: float = 0.25  # relative, for "2 cm" against the diameter
    length_tolerance_mm: float = 3.0
    volume_tolerance: float = 0.3
    min_area_px: int = 16
    min_cross_section_share: float = 0.2
    max_volume_factor: float = 2.5  # × the prior's upper bound


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, fact: str | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.fact = reason, detail, fact


class _Judge:
    """The checks of one sample against the measurements of its view."""

    def __init__(self, sample: Sample, measures: Measurements, claims: Claims, settings: RuleSettings) -> None:
        self.sample = sample
        self.measures = measures
        self.evidence = measures.evidence
        self.claims = claims
        self.settings = settings
        self.region = self.evidence.body_region
        self.multi = sample.query_type == "multi_object"

    # ------------------------------------------------------------ naming

    def named(self, value: str, object_id: int, *, sided: bool = True) -> bool:
        """Whether ``value`` names the object (its clinical term; a sided name needs that
        side unless ``sided`` is false: the query's side words are then checked on their own,
        as a laterality)."""
        label = self.evidence.labels[object_id]
        category = self.measures.category(object_id)
        names = (category_key(label, self.region), category_key(category, self.region))
        if category_key(value, self.region) not in names:
            return False
        if not sided:
            return True
        side = clinical_term(value, self.region).side
        return side is None or clinical_term(label, self.region).side == side or side in self.measures.sides(object_id)

    def others_named(self, value: str, object_id: int) -> list[int]:
        return [o for o in self.measures.object_ids if o != object_id and self.named(value, o)]

    # ------------------------------------------------------------ one object against the claims

    def of_kind(self, object_id: int) -> bool:
        """Whether the object is of the kind the query names (its category, finding or
        description, with the sides claimed): the objects a count counts."""
        claims, label = self.claims, self.evidence.labels[object_id]
        if claims.categories and not any(self.named(c, object_id) for c in claims.categories):
            return False
        if claims.generic and not claims.categories and not is_lesion(label):
            return False
        if any(term not in self.evidence.clinical.get(object_id, {}).values() for term in claims.clinical):
            return False
        sides = [side for side in claims.sides if side != "bilateral"]
        return not sides or all(side in self.measures.sides(object_id) for side in sides)

    def fits(self, object_id: int) -> tuple[str, str] | None:
        """None when every claim is true of the object, else (reason, detail) of the first that
        fails. An object is measured only when a claim needs it (of a thousand nuclei, "the
        largest" reads their areas, not their shapes)."""
        return self.fits_kind(object_id) or self.fits_said(object_id)

    def fits_said(self, object_id: int) -> tuple[str, str] | None:
        """The claims past what it is: its words, measurements and relations."""
        claims = self.claims
        return (
            self.fits_words(object_id)
            or (self.fits_measurements(self.measures.of(object_id)) if claims.lengths_mm or claims.volumes_ml else None)
            or (self.fits_relations(object_id) if claims.relations else None)
        )

    def fits_kind(self, object_id: int) -> tuple[str, str] | None:
        """The claims of what it is: in pieces, its category, a lesion, its clinical finding."""
        return self.fits_pieces(object_id) or self.fits_label(object_id)

    def fits_pieces(self, object_id: int) -> tuple[str, str] | None:
        if self.claims.parts and self.pieces(object_id) < 2:
            return "count_mismatch", "it is seen in one piece"
        return None

    def fits_label(self, object_id: int) -> tuple[str, str] | None:
        """The claims its label and clinical attributes settle (its category, a lesion, its
        clinical finding): nothing is measured or counted to check them."""
        claims, label = self.claims, self.evidence.labels[object_id]
        # What it is comes from the view's labels: objects of another kind are never measured.
        if claims.categories and not any(self.named(c, object_id, sided=False) for c in claims.categories):
            return "category_mismatch", f"it is a {label}"
        if claims.generic and not claims.categories and not is_lesion(label):
            return "category_mismatch", f"it is a {label}, not a lesion"
        clinical = self.evidence.clinical.get(object_id, {})
        if any(term not in clinical.values() for term in claims.clinical):
            return "clinical_mismatch", f"its clinical attributes are {dict(clinical) or 'none'}"
        return None

    def fits_words(self, object_id: int) -> tuple[str, str] | None:
        """The claims a word makes: side, place, shape, intensity, size and rank, in that
        order (the object measured only when one of them is claimed)."""
        return self.fits_place(object_id) or self.fits_look(object_id)

    def fits_place(self, object_id: int) -> tuple[str, str] | None:
        """Side and place words."""
        claims, measures, ev = self.claims, self.measures, self.evidence
        sides = [s for s in claims.sides if not (s == "bilateral" and self.multi)]
        if sides:
            share = measures.right_share(object_id)
            if any(side not in sides_of(share) for side in sides):
                return "laterality_mismatch", f"{share} of it lies on the patient's right"
        if claims.positions:
            box = measures.box(object_id)
            if any(not in_cell(box, place, ev.width, ev.height) for place in claims.positions):
                return "position_mismatch", f"its box centre is in the {measures.position(object_id)} cell"
        return None

    def fits_look(self, object_id: int) -> tuple[str, str] | None:
        """Shape, intensity, size and rank words."""
        claims, measures = self.claims, self.measures
        if claims.shapes:
            m = measures.of(object_id)
            if any(shape not in (m.shapes or ()) for shape in claims.shapes):
                return "shape_mismatch", f"measured shape {sorted(m.shapes or [])}"
        if claims.intensities:
            m = measures.of(object_id)
            if any(intensity_direction(word) not in m.intensities for word in claims.intensities):
                return "intensity_mismatch", f"mean grey {m.contrast} against its ring"
        if claims.size_classes:
            m = measures.of(object_id)
            if any(size not in (m.sizes or ()) for size in claims.size_classes):
                return "size_mismatch", f"measured size {sorted(m.sizes or [])}"
        if claims.size_ranks and not self.multi:
            rank = measures.rank(object_id)
            if any(word not in rank for word in claims.size_ranks):
                return "size_mismatch", f"rank {sorted(rank)} among its kind"
        return None

    def fits_measurements(self, m: Measured) -> tuple[str, str] | None:
        settings = self.settings
        for length in self.claims.lengths_mm:
            d = m.diameter_mm
            if d is None or abs(length - d) > max(settings.length_tolerance_mm, settings.length_tolerance * d):
                return "measurement_mismatch", f"diameter {d} mm"
        for volume in self.claims.volumes_ml:
            v = m.volume_ml
            if v is None or abs(volume - v) > settings.volume_tolerance * v:
                return "measurement_mismatch", f"volume {v} mL"
        return None

    def fits_relations(self, object_id: int) -> tuple[str, str] | None:
        m = self.measures.of(object_id)
        for kind, other in self.claims.relations:
            others = self.others_named(other, object_id)
            if kind == "within":
                ok = any(m.boundary.get(o, 0.0) >= WITHIN_SHARE for o in others)
            elif kind == "touches":
                ok = any(m.boundary.get(o, 0.0) > 0 for o in others)
            else:
                ok = any(self.measures.direction(object_id, o, kind) for o in others)
            if not ok:
                return "relation_mismatch", f"not {kind} the {other}"
        return None

    def pieces(self, object_id: int) -> int:
        return self.measures.pieces(object_id)

    # ------------------------------------------------------------ the verdict

    def verdict(self, facts: dict[int, dict[str, Any]], targets: set[int]) -> None:
        """Raises the first failure: a cue the query rests on disagrees with the measurement,
        a claim is untrue of a target, a count is wrong, the claims fit another object, or a
        target is implausible."""
        for object_id in sorted(targets):
            self.check_evidence(object_id, facts.get(object_id, {}))
        for object_id in sorted(targets):
            failed = self.fits(object_id)
            if failed is not None:
                label = self.evidence.labels[object_id]
                raise _Reject(failed[0], f"claim disagrees with target {object_id} ({label}): {failed[1]}")
        if self.claims.counts:
            expected = len([o for o in self.measures.object_ids if self.of_kind(o)])
            if any(count != expected for count in self.claims.counts) or (self.multi and expected != len(targets)):
                raise _Reject("count_mismatch", f"claims {self.claims.counts}, the view has {expected}")
        # Objects of another kind are passed over (on their labels, without a measurement)
        # before their parts are counted or anything else of them is measured.
        matching = {
            o
            for o in self.measures.object_ids
            if o in targets
            or (self.fits_label(o) is None and self.fits_pieces(o) is None and self.fits_said(o) is None)
        }
        if matching != targets:
            extra = sorted(matching - targets)
            names = ", ".join(self.evidence.labels[c] + " " + str(c) for c in extra)
            raise _Reject("ambiguous", f"the claims also fit {names}")
        prior = _priors(self.measures, targets, self.settings)
        if prior is not None:
            raise _Reject(*prior)

    # ------------------------------------------------------------ the cues against the measurements

    def check_evidence(self, object_id: int, fact: dict[str, Any]) -> None:
        """Raises facts_disagree when the target's shipped mask or a cue the query relies on
        disagrees with the measurement."""
        m = self.measures.of(object_id)
        if self.evidence.plane == "volume":
            self.check_volume_target(object_id, m)
        else:
            self.check_mask(object_id, m)
        claims = self.claims
        checks = [
            ("position", bool(claims.positions), lambda: fact["position"] == m.position or self.sagittal_row(fact, m)),
            (
                "laterality",
                bool(claims.sides),
                lambda: fact["laterality"] not in ("left", "right", "midline") or fact["laterality"] in m.sides,
            ),
            (
                "intensity",
                bool(claims.intensities),
                lambda: fact["intensity"] is None or intensity_direction(fact["intensity"]) in m.intensities,
            ),
            (
                "shape",
                bool(claims.shapes),
                lambda: fact["shape"] is None or (m.shapes is not None and fact["shape"] in m.shapes),
            ),
            (
                "size",
                bool(claims.size_classes),
                lambda: fact["size_class"] is None or (m.sizes is not None and fact["size_class"] in m.sizes),
            ),
            (
                "size_rank",
                bool(claims.size_ranks) and not self.multi,
                lambda: fact["size_rank"] is None or fact["size_rank"] in self.measures.rank(object_id),
            ),
            ("within", any(k == "within" for k, _ in claims.relations), lambda: self.within_agrees(object_id, fact)),
            (
                "relation",
                any(k not in ("within", "touches") for k, _ in claims.relations),
                lambda: self.relation_agrees(object_id, fact),
            ),
            ("clinical", bool(claims.clinical), lambda: dict(fact.get("clinical", {})) == dict(m.clinical)),
        ]
        for name, claimed, agrees in checks:
            if claimed and not agrees():
                raise _Reject(
                    "facts_disagree",
                    f"the cue's {name} of target {object_id} ({_cue_value(name, fact)}) disagrees with the "
                    f"measurement ({_measured_value(name, m)})",
                    name,
                )

    def check_mask(self, object_id: int, m: Measured) -> None:
        """The stored mask against the object's pixels, within the boxes of both."""
        x0, y0, x1, y1 = m.box
        shipped = [t for t in self.sample.targets if t.object_id == object_id]
        for target in shipped:
            if target.label != m.label:
                raise _Reject("facts_disagree", f"target {object_id} is a {m.label} in the view", "category")
            size = tuple(target.mask.get("size", ()))
            box = rle.bbox_xyxy(target.mask) if size == (self.evidence.height, self.evidence.width) else None
            if box is None:
                raise _Reject("facts_disagree", f"the stored mask of target {object_id} is not its pixels", "mask")
            x0, y0, x1, y1 = min(x0, box[0]), min(y0, box[1]), max(x1, box[2]), max(y1, box[3])
        if len(shipped) == 1 and shipped[0].mask.get("counts") == self.measures.masks.get(object_id):
            return  # the very pixels of the object: nothing to decode
        stored = np.zeros((y1 - y0, x1 - x0), bool)
        for target in shipped:
            stored |= rle.decode_window(target.mask, y0, x0, y1, x1)
        mask = self.evidence.objects[y0:y1, x0:x1] == object_id
        if (stored & ~mask).any() or self.measures.largest_piece(mask & ~stored) >= self.measures.min_piece:
            raise _Reject("facts_disagree", f"the stored mask of target {object_id} is not its pixels", "mask")

    def check_volume_target(self, object_id: int, m: Measured) -> None:
        """A volume sample's target against the objects file: its ``bbox_3d`` is the box of
        the object's voxels, its ``mask_3d`` names that file and id, ``area_px`` its voxels."""
        view = self.sample.view or {}
        box = [list(m.box[:3]), list(m.box[3:])]
        for target in (t for t in self.sample.targets if t.object_id == object_id):
            if target.label != m.label:
                raise _Reject("facts_disagree", f"target {object_id} is a {m.label} in the volume", "category")
            if target.bbox_3d != box:
                raise _Reject(
                    "facts_disagree", f"bbox_3d of target {object_id} is {target.bbox_3d}; its voxels span {box}", "box"
                )
            mask = target.mask_3d or {}
            if mask.get("file") != view.get("objects") or mask.get("value") != object_id or target.area_px != m.area_px:
                raise _Reject("facts_disagree", f"the 3D mask of target {object_id} is not its voxels", "mask")

    @staticmethod
    def sagittal_row(fact: dict[str, Any], m: Measured) -> bool:
        return bool(fact.get("plane") == "sagittal" and fact["position"].split()[0] == m.position.split()[0])

    def within_agrees(self, object_id: int, fact: dict[str, Any]) -> bool:
        container = fact.get("within")
        if container is None:
            return True
        m = self.measures.of(object_id)
        return any(m.boundary.get(o, 0.0) >= WITHIN_SHARE for o in self.others_named(container, object_id))

    def relation_agrees(self, object_id: int, fact: dict[str, Any]) -> bool:
        nearest = fact.get("nearest")
        if not nearest:
            return True
        direction, _, other = nearest.partition(":")
        claimed = {(k, o) for k, o in self.claims.relations}
        if not any(o == other or category_key(o, self.region) == category_key(other, self.region) for _, o in claimed):
            return True  # the query relates it to another structure
        return any(self.measures.direction(object_id, o, direction) for o in self.others_named(other, object_id))


def _cue_value(name: str, fact: dict[str, Any]) -> Any:
    return {
        "position": fact.get("position"),
        "laterality": fact.get("laterality"),
        "intensity": fact.get("intensity"),
        "shape": fact.get("shape"),
        "size": fact.get("size_class"),
        "size_rank": fact.get("size_rank"),
        "within": fact.get("within"),
        "relation": fact.get("nearest"),
        "clinical": fact.get("clinical"),
    }.get(name)


def _measured_value(name: str, m: Measured) -> Any:
    return {
        "position": m.position,
        "laterality": f"right share {m.right_share:.2f}" if m.right_share is not None else None,
        "intensity": f"{sorted(m.intensities)}, difference {m.contrast:.1f}" if m.contrast is not None else None,
        "shape": sorted(m.shapes or []),
        "size": sorted(m.sizes or []),
        "within": {k: round(v, 2) for k, v in m.boundary.items()},
        "clinical": dict(m.clinical),
    }.get(name, "-")


def check_rules(
    sample: Sample,
    facts: dict[int, dict[str, Any]],
    measures: Measurements,
    *,
    settings: RuleSettings | None = None,
) -> StageResult:
    """Stage 2: the claims are true of the target(s) as measured from the view's evidence,
    the cues they rest on agree with the measurements, they pick out exactly the target(s),
    and the target is medically plausible. ``facts`` are the cues' facts per object (what
    the synthesizer was told); ``measures`` measures the view again."""
    settings = settings or RuleSettings()
    stage = "rules"
    evidence = measures.evidence
    region = evidence.body_region
    labels = sorted(
        set(evidence.labels_known) | set(evidence.labels.values()) | {measures.category(o) for o in measures.object_ids}
    )
    claims = extract_claims(sample.query, labels, region, tuple(sorted(set(evidence.clinical_terms))))
    info: dict[str, Any] = {"claims": claims.to_dict()}
    if sample.query_type == "absent":
        return check_absent(sample, claims, measures, info)
    targets = {t.object_id for t in sample.targets}
    missing = targets - set(measures.object_ids)
    if missing:
        return StageResult.fail(stage, "schema", f"targets {sorted(missing)} are not objects of the view")
    unsayable = _unsayable(claims, measures)
    if unsayable is not None:
        return StageResult(stage, False, unsayable[0], unsayable[1], info)
    judge = _Judge(sample, measures, claims, settings)
    try:
        judge.verdict(facts, targets)
    except _Reject as rejected:
        if rejected.fact is not None:
            info["fact"] = rejected.fact
        return StageResult(stage, False, rejected.reason, rejected.detail, info)
    return StageResult(stage, True, info=info)


def check_absent(sample: Sample, claims: Claims, measures: Measurements, info: dict[str, Any]) -> StageResult:
    """Stage 2 for an absent query: it names a structure of the dataset and claims nothing
    else of it, and neither that structure nor one whose name covers or is covered by it
    (:func:`medground.anatomy.names_overlap`) has a voxel in the view, measured from the
    view's label map (:meth:`~medground.verify.measure.Measurements.labels_in_view`), never
    from the cues; the draft's ``category`` and ``absent_from`` agree with that."""
    stage = "rules"
    evidence = measures.evidence
    region = evidence.body_region
    unsayable = _unsayable(claims, measures)
    if unsayable is not None:
        return StageResult(stage, False, unsayable[0], unsayable[1], info)
    known = sorted(set(evidence.labels_known) | set(evidence.label_names.values()))
    named = sorted({label for c in claims.categories for label in known if _names(c, label, region)})
    if claims.generic and not claims.categories:
        named = [label for label in known if is_lesion(label)]
    if not named:
        return StageResult.fail(stage, "absent_unnamed", "the query names no structure of the dataset", info)
    term_sides = {clinical_term(label, region).side for label in named}
    extra = {
        "place": claims.positions,
        "side": [s for s in claims.sides if s not in term_sides],
        "shape": claims.shapes,
        "intensity": claims.intensities,
        "size": [*claims.size_classes, *claims.size_ranks, *claims.lengths_mm, *claims.volumes_ml],
        "relation": claims.relations,
        "count": [*claims.counts, *claims.parts],
        "clinical": claims.clinical,
    }
    said = [kind for kind, values in extra.items() if values]
    if said:
        return StageResult.fail(
            stage,
            "absent_claims",
            f"the query claims a {', '.join(said)} of a structure that is not in the image",
            info,
        )
    present = measures.labels_in_view
    seen = sorted(p for p in present if any(p == n or names_overlap(n, p, region) for n in named))
    info["labels_in_view"] = sorted(present)
    if seen:
        return StageResult.fail(
            stage,
            "structure_present",
            f"the query names {', '.join(named)}, but the view's label map has {', '.join(seen)} on its slice",
            info,
        )
    category = sample.referring_attributes.get("category")
    where = sample.referring_attributes.get("absent_from")
    if category not in named:
        return StageResult(
            stage,
            False,
            "facts_disagree",
            f"the draft says {category!r}, the query names {', '.join(named)}",
            info | {"fact": "absent"},
        )
    in_case = measures.label_in_case(str(category))
    if where is not None and where != ("view" if in_case else "case"):
        detail = f"absent_from {where!r}, but the case {'has' if in_case else 'lacks'} {category} elsewhere"
        return StageResult(stage, False, "facts_disagree", detail, info | {"fact": "absent"})
    return StageResult(stage, True, info=info)


def _names(claimed: str, label: str, region: str | None) -> bool:
    """Whether a claimed category (a label name, or a term without its side: "kidney")
    names label ``label``."""
    if claimed == label:
        return True
    if category_key(claimed, region) != category_key(label, region):
        return False
    side = clinical_term(claimed, region).side
    return side is None or clinical_term(label, region).side in (None, side)


def _unsayable(claims: Claims, measures: Measurements) -> tuple[str, str] | None:
    """Claims no view of this kind can support: text that is no claim at all, anatomy the
    dataset does not label, patient sides without an orientation, image left/right on a
    sagittal view."""
    evidence = measures.evidence
    if claims.foreign:
        shown = ", ".join(repr(f) for f in dict.fromkeys(claims.foreign[:5]))
        return (
            "foreign_text",
            f"the query carries text that is no claim about the image ({shown}): a link, an address or an "
            "instruction, e.g. from dataset text the model followed",
        )
    if claims.unknown:
        return (
            "unknown_structure",
            f"the query names {', '.join(claims.unknown)}, which no label of the dataset matches",
        )
    if not evidence.oriented and any(side in ("left", "right") for side in claims.sides):
        return "side_without_orientation", "the image has no patient orientation; left/right may only be image-relative"
    if evidence.plane == "volume" and (claims.positions or claims.shapes or claims.intensities):
        said = [*claims.positions, *claims.shapes, *claims.intensities]
        return (
            "unsayable_in_volume",
            f"a volume has no place in an image, in-plane shape or rendered brightness to claim ({', '.join(said)})",
        )
    if evidence.plane == "sagittal" and any("left" in p or "right" in p for p in claims.positions):
        return (
            "position_on_sagittal",
            "on a sagittal view image left/right is anterior/posterior: places may only be upper or lower",
        )
    return None


def _priors(measures: Measurements, targets: Iterable[int], settings: RuleSettings) -> tuple[str, str] | None:
    table = priors()
    evidence = measures.evidence
    region = evidence.body_region
    organs = {o: evidence.labels[o] for o in measures.object_ids if not is_lesion(evidence.labels[o])}
    for object_id in targets:
        m = measures.of(object_id)
        label = m.label
        side = clinical_term(label, region).side
        if side is not None and m.sides and side not in m.sides:
            return "laterality_prior", f"{label} lies on the patient's {'/'.join(sorted(m.sides))}"
        key = label.lower().replace(" ", "_").removesuffix("_left").removesuffix("_right")
        volume_range = table.get("volume_ml", {}).get(key)
        if volume_range and m.volume_ml is not None and m.volume_ml > settings.max_volume_factor * volume_range[1]:
            return "implausible_size", f"{label} of {m.volume_ml:.0f} mL (usual {volume_range[0]}-{volume_range[1]} mL)"
        regions = table.get("body_regions", {}).get(key)
        if regions and region not in (None, "unspecified") and region not in regions:
            return "unexpected_region", f"{label} is not expected in a {region} study ({', '.join(regions)})"
        container = _container(label, organs, region)
        if container is not None and not any(m.boundary.get(o, 0.0) > 0 for o in container):
            return "outside_container", f"{label} does not touch its organ"
        if m.area_px < settings.min_area_px or m.cross_section_share < settings.min_cross_section_share:
            return "below_visibility_floor", f"{m.area_px} px, {m.cross_section_share:.0%} of its largest cross-section"
    return None


def _container(label: str, organs: dict[int, str], region: str | None) -> list[int] | None:
    """The objects of the organ a lesion label names ("liver lesion" → the liver), when that
    organ is in the view (``organs``: the view's objects that are not lesions, by id)."""
    if not is_lesion(label):
        return None
    words = label.lower().replace("_", " ")
    for name in sorted(set(organs.values()), key=len, reverse=True):
        if words.startswith(category_key(name, region) + " ") or words.startswith(name.lower().replace("_", " ") + " "):
            return [o for o, n in organs.items() if n == name]
    return None
