"""The three verification stages: format, rules (geometry and medical priors), visual judge.

Every draft goes through them in order, whoever wrote it; the first stage that fails
rejects it with a stable reason code and a detail a person can read. Reason codes:

* format: ``schema``, ``box_outside_image``, ``box_degenerate``, ``box_mask_mismatch``,
  ``query_length``, ``leaked_number``, ``leaked_rendering``, ``leaked_identifier``,
  ``unfilled_slot``, ``register``.
* rules: ``category_mismatch``, ``laterality_mismatch``, ``side_without_orientation``,
  ``position_mismatch``, ``shape_mismatch``, ``intensity_mismatch``, ``size_mismatch``,
  ``measurement_mismatch``, ``relation_mismatch``, ``count_mismatch``, ``ambiguous``,
  ``no_match``, ``unknown_structure``, ``laterality_prior``, ``implausible_size``, ``unexpected_region``,
  ``outside_container``, ``below_visibility_floor``.
* visual (evidence): ``low_contrast``, ``cut_by_border``, ``intensity_not_visible``,
  ``box_not_tight``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medground import rle
from medground.cues import contrast, dilate, is_lesion, priors
from medground.predicates import category_key, holds
from medground.records import Sample
from medground.terms import clinical_term
from medground.verify.claims import Claims, extract_claims, vocabulary

__all__ = [
    "RuleSettings",
    "StageResult",
    "check_format",
    "check_rules",
    "judge_evidence",
    "object_facts",
    "reject",
]

QUERY_TYPES = ("direct", "descriptive", "relational", "multi_object")


@dataclass(frozen=True)
class StageResult:
    """One stage's verdict on one draft."""

    stage: str
    passed: bool
    reason: str | None = None
    detail: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"passed": self.passed}
        if not self.passed:
            out.update(reason=self.reason, detail=self.detail)
        if self.info:
            out["info"] = self.info
        return out


def _fail(stage: str, reason: str, detail: str) -> StageResult:
    return StageResult(stage, False, reason, detail)


def reject(sample: Sample, result: StageResult) -> dict[str, Any]:
    """The ``rejected.jsonl`` record of a draft that failed ``result``."""
    record = sample.to_dict()
    record["rejection"] = {"stage": result.stage, "reason": result.reason, "detail": result.detail}
    return record


def object_facts(view: Any, cues: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The facts of every object in a view that the rules check claims against
    (JSON-ready, so they travel with the drafts)."""
    facts = {}
    for component, obj in view.objects.items():
        cue = cues[component]
        facts[component] = {
            "label": obj.anchor.label,
            "bbox_xyxy": list(obj.bbox_xyxy),
            "area_px": obj.area_px,
            "position": cue["image_position"],
            "nearest": (f"{cue['relations']['nearest']['direction']}:{cue['relations']['nearest']['label']}"
                        if cue["relations"].get("nearest") and cue["relations"]["nearest"].get("direction") else None),
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
        }
    return facts


# ----------------------------------------------------------------------------- stage 1


_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?!\s*(?:mm|cm|ml|cc|cm3|%)\b)(?![\w.])")
_SLOT = re.compile(r"[{}<>\[\]]|\bTODO\b|\bN/A\b|\bnull\b|\bNone\b|\$\w+")
_FILE = re.compile(r"\.\s?(?:nii|gz|png|jpe?g|bmp|tiff?|nrrd|mha|mhd|dcm)\b", re.IGNORECASE)
_REGISTER = re.compile(r"\b(?:I|I'm|I am|sure|as an ai|certainly|here is|here's|the answer)\b", re.IGNORECASE)


def check_format(sample: Sample, *, min_words: int = 3, max_words: int = 40) -> StageResult:
    """Stage 1: a well-formed record, exact boxes, and a query that gives nothing away."""
    stage = "format"
    if sample.query_type not in QUERY_TYPES:
        return _fail(stage, "schema", f"query_type {sample.query_type!r} is not one of {', '.join(QUERY_TYPES)}")
    if not isinstance(sample.query, str) or not sample.query.strip():
        return _fail(stage, "schema", "empty query")
    if not sample.targets or (sample.query_type == "multi_object") != (len(sample.targets) > 1):
        return _fail(stage, "schema", f"{len(sample.targets)} target(s) for a {sample.query_type} query")
    if not (isinstance(sample.width, int) and isinstance(sample.height, int) and sample.width > 0 and sample.height > 0):
        return _fail(stage, "schema", f"image size {sample.width}x{sample.height}")
    for target in sample.targets:
        box = target.bbox_xyxy
        if len(box) != 4 or not all(isinstance(v, int) for v in box):
            return _fail(stage, "schema", f"bbox_xyxy {box} is not four integers")
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > sample.width or y1 > sample.height:
            return _fail(stage, "box_outside_image", f"box {box} outside the {sample.width}x{sample.height} image")
        if x1 <= x0 or y1 <= y0:
            return _fail(stage, "box_degenerate", f"box {box} has no area")
        try:
            size = list(target.mask_rle["size"])
            mask_box = rle.bbox_xyxy(target.mask_rle)
        except (KeyError, TypeError, ValueError) as exc:
            return _fail(stage, "schema", f"mask_rle unreadable: {exc}")
        if size != [sample.height, sample.width] or mask_box != box:
            return _fail(stage, "box_mask_mismatch", f"box {box} but the mask's box is {mask_box} (mask size {size})")
    query = sample.query.strip()
    words = query.split()
    if not min_words <= len(words) <= max_words:
        return _fail(stage, "query_length", f"{len(words)} words; expected {min_words}..{max_words}")
    if _SLOT.search(query):
        return _fail(stage, "unfilled_slot", f"template or markup left in the query: {_SLOT.search(query).group(0)!r}")  # type: ignore[union-attr]
    number = _NUMBER.search(query)
    if number:
        return _fail(stage, "leaked_number", f"a bare number {number.group(0)!r} (only measurements with units may appear)")
    for word in vocabulary()["leaks"]["words"]:
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", query, re.IGNORECASE):
            return _fail(stage, "leaked_rendering", f"the query mentions {word!r}")
    if _FILE.search(query) or re.search(rf"\b{re.escape(sample.case_id)}\b", query) and len(sample.case_id) > 3:
        return _fail(stage, "leaked_identifier", "the query names a file or the case id")
    if re.search(r"\b(?:label|class|id)\s*#?\s*\d", query, re.IGNORECASE):
        return _fail(stage, "leaked_identifier", "the query names a label id")
    letters = sum(ch.isascii() and (ch.isalpha() or ch in " -',.?;:()/%³") or ch.isdigit() for ch in query)
    if letters < 0.95 * len(query) or _REGISTER.search(query) or query[-1] not in ".?":
        return _fail(stage, "register", "not a single clinical sentence in English (chatter, first person, stray characters or no final punctuation)")
    return StageResult(stage, True)


# ----------------------------------------------------------------------------- stage 2


@dataclass(frozen=True)
class RuleSettings:
    """Tolerances of the rules stage."""

    length_tolerance: float = 0.25  # relative, for "2 cm" against the diameter
    length_tolerance_mm: float = 3.0
    volume_tolerance: float = 0.3
    min_area_px: int = 16
    min_cross_section_share: float = 0.2
    max_volume_factor: float = 2.5  # × the prior's upper bound


def _matches(claims: Claims, fact: dict[str, Any], facts: dict[int, dict[str, Any]], sample: Sample,
             settings: RuleSettings, body_region: str | None, multi: bool) -> str | None:
    """None when the object satisfies every claim, else the reason code of the first that fails."""
    def has(attribute: str, value: Any) -> bool:
        return holds(attribute, value, fact, facts, width=sample.width, height=sample.height, body_region=body_region)

    if claims.categories and not any(category_key(c, body_region) == category_key(fact["label"], body_region)
                                     for c in claims.categories):
        return "category_mismatch"
    if claims.generic and not claims.categories and not is_lesion(fact["label"]):
        return "category_mismatch"
    for side in claims.sides:
        if side == "bilateral" and multi:
            continue
        if fact["laterality"] != side:
            return "laterality_mismatch"
    if any(not has("position", p) for p in claims.positions):
        return "position_mismatch"
    if claims.shapes and fact["shape"] not in claims.shapes:
        return "shape_mismatch"
    if claims.intensities and fact["intensity"] not in claims.intensities:
        return "intensity_mismatch"
    if claims.size_classes and fact["size_class"] not in claims.size_classes:
        return "size_mismatch"
    if claims.size_ranks and not multi and fact["size_rank"] not in claims.size_ranks:
        return "size_mismatch"
    for length in claims.lengths_mm:
        if abs(length - fact["diameter_mm"]) > max(settings.length_tolerance_mm, settings.length_tolerance * fact["diameter_mm"]):
            return "measurement_mismatch"
    for volume in claims.volumes_ml:
        if fact["volume_ml"] is None or abs(volume - fact["volume_ml"]) > settings.volume_tolerance * fact["volume_ml"]:
            return "measurement_mismatch"
    for kind, other_label in claims.relations:
        if kind in ("within", "touches"):
            ok = has(kind, other_label)
        else:
            ok = has("relation", f"{kind}:{other_label}")
        if not ok:
            return "relation_mismatch"
    return None


def check_rules(sample: Sample, facts: dict[int, dict[str, Any]], *, body_region: str | None, oriented: bool,
                settings: RuleSettings | None = None, labels: Iterable[str] = ()) -> StageResult:
    """Stage 2: every claim agrees with the computed cues, the claims pick out exactly the
    target(s) among the view's objects, and the target is medically plausible.

    ``labels`` are the dataset's label names, so that a query naming a structure absent from
    the view is caught too."""
    settings = settings or RuleSettings()
    stage = "rules"
    # Every structure a claim could name: the view's objects and those they relate to.
    labels = sorted(set(labels) | {f["label"] for f in facts.values()}
                    | {name for f in facts.values() for name in [f["within"], *f["touches"], *f["boundary_shares"]] if name}
                    | {f["nearest"].partition(":")[2] for f in facts.values() if f["nearest"]})
    claims = extract_claims(sample.query, labels, body_region)
    info = {"claims": claims.to_dict()}
    multi = sample.query_type == "multi_object"
    targets = {t.component_id for t in sample.targets}
    missing = targets - set(facts)
    if missing:
        return _fail(stage, "schema", f"targets {sorted(missing)} are not objects of the view")
    if claims.unknown:
        return StageResult(stage, False, "unknown_structure",
                           f"the query names {', '.join(claims.unknown)}, which no label of the dataset matches", info)
    if not oriented and any(side in ("left", "right") for side in claims.sides):
        return StageResult(stage, False, "side_without_orientation",
                           "the image has no patient orientation; left/right may only be image-relative", info)
    for component in sorted(targets):
        reason = _matches(claims, facts[component], facts, sample, settings, body_region, multi)
        if reason is not None:
            return StageResult(stage, False, reason, f"claim disagrees with the cues of target {component} "
                               f"({facts[component]['label']}): {claims.to_dict()}", info)
    if claims.counts:
        if multi:
            expected = len(targets)
        else:
            expected = sum(1 for f in facts.values() if f["label"] == facts[min(targets)]["label"])
        if any(count != expected for count in claims.counts):
            return StageResult(stage, False, "count_mismatch", f"claims {claims.counts}, the view has {expected}", info)
    matching = {c for c, f in facts.items() if _matches(claims, f, facts, sample, settings, body_region, multi) is None}
    if matching != targets:
        extra = sorted(matching - targets)
        return StageResult(stage, False, "ambiguous" if extra else "no_match",
                           f"the claims also fit {', '.join(facts[c]['label'] + ' ' + str(c) for c in extra)}" if extra
                           else "the claims fit no object", info)
    prior = _priors(sample, facts, targets, body_region, settings)
    if prior is not None:
        return StageResult(stage, False, prior[0], prior[1], info)
    return StageResult(stage, True, info=info)


def _priors(sample: Sample, facts: dict[int, dict[str, Any]], targets: Iterable[int], body_region: str | None,
            settings: RuleSettings) -> tuple[str, str] | None:
    table = priors()
    for component in targets:
        fact = facts[component]
        label = fact["label"]
        side = clinical_term(label, body_region).side
        if side is not None and fact["laterality"] in ("left", "right") and fact["laterality"] != side:
            return "laterality_prior", f"{label} lies on the patient's {fact['laterality']}"
        key = label.lower().replace(" ", "_").removesuffix("_left").removesuffix("_right")
        volume_range = table.get("volume_ml", {}).get(key)
        if volume_range and fact["volume_ml"] is not None and fact["volume_ml"] > settings.max_volume_factor * volume_range[1]:
            return "implausible_size", f"{label} of {fact['volume_ml']:.0f} mL (usual {volume_range[0]}-{volume_range[1]} mL)"
        regions = table.get("body_regions", {}).get(key)
        if regions and body_region not in (None, "unspecified") and body_region not in regions:
            return "unexpected_region", f"{label} is not expected in a {body_region} study ({', '.join(regions)})"
        container = _container(label, facts, body_region)
        if container is not None and fact["boundary_shares"].get(container, 0.0) == 0.0 and fact["within"] != container:
            return "outside_container", f"{label} does not touch the {container}"
        if fact["area_px"] < settings.min_area_px or fact["cross_section_share"] < settings.min_cross_section_share:
            return "below_visibility_floor", (f"{fact['area_px']} px, {fact['cross_section_share']:.0%} of its largest "
                                             "cross-section")
    return None


def _container(label: str, facts: dict[int, dict[str, Any]], body_region: str | None) -> str | None:
    """The organ a lesion label names ("liver lesion" → "liver"), when that organ is in the view."""
    if not is_lesion(label):
        return None
    organs = {f["label"] for f in facts.values() if not is_lesion(f["label"])}
    words = label.lower().replace("_", " ")
    for organ in sorted(organs, key=len, reverse=True):
        noun = category_key(organ, body_region)
        if words.startswith(noun + " ") or words.startswith(organ.lower().replace("_", " ") + " "):
            return organ
    return None


# ----------------------------------------------------------------------------- stage 3


@dataclass(frozen=True)
class EvidenceSettings:
    """Thresholds of the evidence judge (contrast in the units of ``cues.intensity_relation``)."""

    min_contrast: dict[str, float] = field(default_factory=lambda: {"CT": 10.0, "MR": 0.25, "PET": 0.25, "other": 0.02})
    max_border_share: float = 0.3
    ring_px: int = 3


def judge_evidence(sample: Sample, values: NDArray[Any], settings: EvidenceSettings | None = None,
                   full_scale: float | None = None) -> StageResult:
    """Stage 3 without a model: each target is visible in the stored intensities ``values``
    (on the image grid): contrast against a surrounding ring, not cut off by the border,
    the claimed intensity relation holds, and the box is tight around the mask.

    ``full_scale`` is the range photographs are compared in (255 for 8-bit images; by
    default the range of ``values``), as in :func:`medground.cues.contrast`."""
    settings = settings or EvidenceSettings()
    stage = "visual"
    contrasts = []
    for target in sample.targets:
        mask = rle.decode(target.mask_rle)
        if mask.shape != values.shape[:2]:
            return _fail(stage, "box_not_tight", f"mask {mask.shape} is not on the image grid {values.shape[:2]}")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        if box != target.bbox_xyxy:
            return _fail(stage, "box_not_tight", f"box {target.bbox_xyxy} but the mask spans {box}")
        edge = np.zeros_like(mask)
        edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
        boundary = mask & ~_erode(mask)
        border_share = float((boundary & edge).sum()) / max(1, int(boundary.sum()))
        if border_share > settings.max_border_share:
            return _fail(stage, "cut_by_border", f"{border_share:.0%} of its outline is the image border")
        ring = dilate(mask, settings.ring_px) & ~mask
        if not ring.any():
            return _fail(stage, "low_contrast", "no surrounding tissue to compare with")
        inside, around = values[mask].astype(np.float64), values[ring].astype(np.float64)
        scale = full_scale if full_scale is not None else max(float(values.max() - values.min()), 1e-6)
        score = contrast(sample.modality, inside, around, scale)
        threshold = settings.min_contrast.get(sample.modality, settings.min_contrast["other"])
        # Visible if the mean differs, or if the outline shows as an edge (e.g. isodense organs
        # separated by fat planes): the ring's spread exceeds the threshold too.
        edge_strength = float(around.std()) if sample.modality == "CT" else float(around.std()) / max(float(around.mean()), 1e-6)
        if abs(score) < threshold and edge_strength < threshold:
            return _fail(stage, "low_contrast", f"contrast {score:.3g} against its surroundings (< {threshold})")
        claimed = target.cues.get("intensity", {}).get("relation")
        words = extract_claims(sample.query, [target.label]).intensities
        if words and claimed in words and math.copysign(1.0, score) != math.copysign(1.0, target.cues["intensity"]["contrast"]):
            return _fail(stage, "intensity_not_visible", f"the query says {words[0]} but the pixels disagree")
        contrasts.append(round(score, 4))
    return StageResult(stage, True, info={"judge": "evidence", "contrast": contrasts})


def _erode(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Erosion that treats outside the image as background, so pixels on the border are outline."""
    padded = np.pad(mask, 1, constant_values=False)
    return ~dilate(~padded, 1)[1:-1, 1:-1]


def with_verification(sample: Sample, results: list[StageResult]) -> Sample:
    """The sample with its per-stage results recorded."""
    return replace(sample, verification={r.stage: r.to_dict() for r in results})
